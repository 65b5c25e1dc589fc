"""Tenants, managed by the platform admin: create, list, read, change, disable, delete."""

from conftest import Api, error, ok, unique


def test_create_get_list_patch_delete(admin: Api):
    name = unique("acme")
    created = ok(admin.post("/api/v1/tenants", json={"name": name, "metadata": {"plan": "pro", "region": "eu"}}), 201)
    assert created["object"] == "tenant"
    assert created["id"].startswith("ten_")
    assert created["name"] == name
    assert created["status"] == "active"
    assert created["metadata"] == {"plan": "pro", "region": "eu"}
    assert created["created_at"] and created["updated_at"]
    tid = created["id"]

    assert ok(admin.get(f"/api/v1/tenants/{tid}")) == created

    listed = ok(admin.get("/api/v1/tenants", params={"limit": 100}))
    assert listed["object"] == "list"
    assert listed["url"] == "/api/v1/tenants"
    assert tid in [t["id"] for t in listed["data"]]
    # Newest first: the tenant just created leads the first page.
    assert listed["data"][0]["id"] == tid

    patched = ok(admin.patch(f"/api/v1/tenants/{tid}", json={"name": name + "-renamed", "metadata": {"region": None, "tier": "gold"}}))
    assert patched["name"] == name + "-renamed"
    assert patched["metadata"] == {"plan": "pro", "tier": "gold"}
    assert patched["updated_at"] >= created["updated_at"]
    assert ok(admin.get(f"/api/v1/tenants/{tid}")) == patched

    cleared = ok(admin.patch(f"/api/v1/tenants/{tid}", json={"metadata": None}))
    assert cleared["metadata"] == {}

    deleted = ok(admin.delete(f"/api/v1/tenants/{tid}"))
    assert deleted == {"id": tid, "object": "tenant", "deleted": True}
    error(admin.get(f"/api/v1/tenants/{tid}"), 404, "resource_missing")
    error(admin.delete(f"/api/v1/tenants/{tid}"), 404, "resource_missing")
    error(admin.patch(f"/api/v1/tenants/{tid}", json={"name": "x"}), 404, "resource_missing")
    assert tid not in [t["id"] for t in ok(admin.get("/api/v1/tenants", params={"limit": 100}))["data"]]


def test_deleted_tenant_keys_stop_working(admin: Api, make_tenant):
    t = make_tenant()
    second, second_api = t.new_key(["connections:read"])
    ok(t.api.get("/api/v1/connections"))  # both keys work (and are now cached)
    ok(second_api.get("/api/v1/connections"))
    t.connect()

    ok(admin.delete(f"/api/v1/tenants/{t.id}"))
    error(t.api.get("/api/v1/connections"), 401)
    error(second_api.get("/api/v1/connections"), 401)
    error(t.api.get("/api/v1/api-keys"), 401)
    error(admin.get(f"/api/v1/tenants/{t.id}/api-keys"), 404, "resource_missing")


def test_disabled_tenant_is_refused_until_enabled(admin: Api, tenant):
    ok(tenant.api.get("/api/v1/connections"))
    disabled = ok(admin.patch(f"/api/v1/tenants/{tenant.id}", json={"status": "disabled"}))
    assert disabled["status"] == "disabled"
    error(tenant.api.get("/api/v1/connections"), 403, "tenant_disabled")
    ok(admin.patch(f"/api/v1/tenants/{tenant.id}", json={"status": "active"}))
    ok(tenant.api.get("/api/v1/connections"))


def test_tenant_pages_walk_forward_and_back(admin: Api):
    ids = [ok(admin.post("/api/v1/tenants", json={"name": unique("page")}), 201)["id"] for _ in range(5)]
    try:
        newest_first = list(reversed(ids))
        first = ok(admin.get("/api/v1/tenants", params={"limit": 2}))
        assert [t["id"] for t in first["data"]] == newest_first[:2]
        assert first["has_more"] is True
        second = ok(admin.get("/api/v1/tenants", params={"limit": 2, "starting_after": newest_first[1]}))
        assert [t["id"] for t in second["data"]] == newest_first[2:4]
        back = ok(admin.get("/api/v1/tenants", params={"limit": 2, "ending_before": newest_first[2]}))
        assert [t["id"] for t in back["data"]] == newest_first[:2]
    finally:
        for tid in ids:
            admin.delete(f"/api/v1/tenants/{tid}")


def test_tenant_validation(admin: Api):
    error(admin.post("/api/v1/tenants", json={"name": ""}), 422, param="name")
    error(admin.post("/api/v1/tenants", json={"name": "x" * 201}), 422, param="name")
    error(admin.post("/api/v1/tenants", json={}), 400, "parameter_missing", "name")
    error(admin.post("/api/v1/tenants", json={"name": "a", "colour": "red"}), 400, "parameter_unknown", "colour")
    error(admin.post("/api/v1/tenants", json={"name": 5}), 400, "parameter_invalid", "name")
    error(admin.post("/api/v1/tenants", data="{not json", headers={"content-type": "application/json"}), 400, "body_invalid_json")
    error(admin.post("/api/v1/tenants", data="name=a", headers={"content-type": "application/x-www-form-urlencoded"}), 415, "content_type_invalid")
    error(admin.get("/api/v1/tenants/not-an-id"), 400, "invalid_id", "id")
    error(admin.get("/api/v1/tenants", params={"limit": 0}), 400, param="limit")
    error(admin.get("/api/v1/tenants", params={"limit": 101}), 400, param="limit")
    error(admin.get("/api/v1/tenants", params={"colour": "red"}), 400, "parameter_unknown")
    error(admin.patch("/api/v1/tenants/ten_00000000000000000000000000", json={"status": "frozen"}), 400)


def test_tenant_endpoints_need_the_admin_token(tenant, anon: Api):
    error(tenant.api.get("/api/v1/tenants"), 403, "admin_required")
    error(tenant.api.post("/api/v1/tenants", json={"name": "x"}), 403, "admin_required")
    error(tenant.api.get(f"/api/v1/tenants/{tenant.id}"), 403, "admin_required")
    error(tenant.api.delete(f"/api/v1/tenants/{tenant.id}"), 403, "admin_required")
    error(tenant.api.post(f"/api/v1/tenants/{tenant.id}/api-keys", json={"scopes": ["admin"]}), 403, "admin_required")
    error(anon.get("/api/v1/tenants"), 401, "api_key_missing")
    error(Api("not-a-real-token-at-all").get("/api/v1/tenants"), 401)
