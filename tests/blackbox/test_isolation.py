"""Tenants never see each other: another tenant's object is a 404 (never a 403)
on every route that takes an id, and nothing about it changes."""

from conftest import error, ok, stable, stripe_key


def test_another_tenants_objects_are_not_found(tenant, other_tenant):
    conn = tenant.connect(external_id="mine", name="A's")
    spare, _ = tenant.new_key(["connections:read"])
    intruder = other_tenant.api
    cid = conn["id"]

    attempts = [
        intruder.get(f"/api/v1/connections/{cid}"),
        intruder.patch(f"/api/v1/connections/{cid}", json={"name": "stolen"}),
        intruder.delete(f"/api/v1/connections/{cid}"),
        intruder.post(f"/api/v1/connections/{cid}/validate"),
        intruder.post(f"/api/v1/connections/{cid}/rotate", json={"api_key": stripe_key()}),
        intruder.get(f"/api/v1/api-keys/{spare['id']}"),
        intruder.delete(f"/api/v1/api-keys/{spare['id']}"),
        intruder.get(f"/api/v1/api-keys/{tenant.key_id}"),
        intruder.delete(f"/api/v1/api-keys/{tenant.key_id}"),
    ]
    for r in attempts:
        error(r, 404, "resource_missing")

    # Lists and filters show nothing of the other tenant.
    assert other_tenant.connections() == []
    assert other_tenant.connections(external_id="mine") == []
    keys = ok(intruder.get("/api/v1/api-keys", params={"limit": 100}))["data"]
    assert {k["id"] for k in keys} == {other_tenant.key_id}
    events = ok(intruder.get("/api/v1/audit-events", params={"limit": 100}))["data"]
    assert all(e["tenant_id"] == other_tenant.id for e in events)
    assert ok(intruder.get("/api/v1/audit-events", params={"target_id": cid}))["data"] == []
    # Paging cursors from another tenant lead nowhere either.
    assert ok(intruder.get("/api/v1/connections", params={"starting_after": cid}))["data"] == []

    # The owner sees everything unchanged, and its keys still work.
    after = ok(tenant.api.get(f"/api/v1/connections/{cid}"))
    assert stable(after) == stable(conn)
    listed = ok(tenant.api.get("/api/v1/api-keys", params={"limit": 100}))["data"]
    assert {k["id"]: k["status"] for k in listed} == {tenant.key_id: "active", spare["id"]: "active"}


def test_admin_key_routes_check_the_owner(admin, tenant, other_tenant):
    """The admin's per-tenant key routes do not reach a key through the wrong tenant."""
    error(admin.get(f"/api/v1/tenants/{other_tenant.id}/api-keys/{tenant.key_id}"), 404, "resource_missing")
    error(admin.delete(f"/api/v1/tenants/{other_tenant.id}/api-keys/{tenant.key_id}"), 404, "resource_missing")
    ok(tenant.api.get("/api/v1/connections"))
