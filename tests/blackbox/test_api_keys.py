"""Tenant API keys: created by the admin or by the tenant, shown once, several
live at once, revoked at once, and limited by their scopes."""

import base64

from conftest import Api, error, ok, stable


def test_admin_creates_a_key_shown_only_once(admin: Api, tenant):
    created = ok(
        admin.post(f"/api/v1/tenants/{tenant.id}/api-keys", json={"scopes": ["connections:write", "proxy"], "name": "backend"}),
        201,
    )
    assert created["object"] == "api_key"
    assert created["id"].startswith("key_")
    assert created["tenant_id"] == tenant.id
    assert created["name"] == "backend"
    assert sorted(created["scopes"]) == ["connections:write", "proxy"]
    assert created["status"] == "active"
    assert isinstance(created["key"], str) and len(created["key"]) >= 32
    assert created["hint"].endswith(created["key"][-4:])
    assert created["revoked_at"] is None

    # Neither listing nor reading shows the secret again.
    for listing in (
        ok(admin.get(f"/api/v1/tenants/{tenant.id}/api-keys")),
        ok(tenant.api.get("/api/v1/api-keys")),
    ):
        ids = [k["id"] for k in listing["data"]]
        assert created["id"] in ids and tenant.key_id in ids
        for k in listing["data"]:
            assert "key" not in k, k
            assert created["key"] not in str(k)
    for one in (
        ok(admin.get(f"/api/v1/tenants/{tenant.id}/api-keys/{created['id']}")),
        ok(tenant.api.get(f"/api/v1/api-keys/{created['id']}")),
    ):
        assert "key" not in one
        assert one["id"] == created["id"] and one["hint"] == created["hint"]

    # The new key works with either header form.
    ok(Api(created["key"]).get("/api/v1/connections"))
    ok(Api(created["key"], bearer=True).get("/api/v1/connections"))


def test_two_keys_then_revoke_one(tenant):
    second = ok(tenant.api.post("/api/v1/api-keys", json={"scopes": ["admin"], "name": "rotation"}), 201)
    assert "key" in second
    second_api = Api(second["key"])
    ok(tenant.api.get("/api/v1/api-keys"))
    ok(second_api.get("/api/v1/api-keys"))

    # Revoke the original key with the new one: it stops at once, the new one goes on.
    revoked = ok(second_api.delete(f"/api/v1/api-keys/{tenant.key_id}"))
    assert revoked["id"] == tenant.key_id
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"]
    assert "key" not in revoked
    error(tenant.api.get("/api/v1/api-keys"), 401, "api_key_revoked")
    error(tenant.api.get("/api/v1/connections"), 401)
    listing = ok(second_api.get("/api/v1/api-keys"))
    status = {k["id"]: k["status"] for k in listing["data"]}
    assert status == {tenant.key_id: "revoked", second["id"]: "active"}
    # Revoking again still answers with the (revoked) key; an unknown id is a 404.
    r = second_api.delete(f"/api/v1/api-keys/{tenant.key_id}")
    assert r.status_code in (200, 404), r.text


def test_admin_revokes_a_tenant_key(admin: Api, tenant):
    created, api = tenant.new_key(["connections:read"])
    ok(api.get("/api/v1/connections"))
    revoked = ok(admin.delete(f"/api/v1/tenants/{tenant.id}/api-keys/{created['id']}"))
    assert revoked["status"] == "revoked"
    error(api.get("/api/v1/connections"), 401, "api_key_revoked")
    ok(tenant.api.get("/api/v1/connections"))


def test_read_only_key_cannot_write(tenant):
    conn = tenant.connect()
    _, reader = tenant.new_key(["connections:read"])
    ok(reader.get("/api/v1/connections"))
    ok(reader.get(f"/api/v1/connections/{conn['id']}"))
    writes = [
        reader.post("/api/v1/connections", json={"provider": "stripe", "api_key": "sk_test_" + "a1" * 12}),
        reader.patch(f"/api/v1/connections/{conn['id']}", json={"name": "nope"}),
        reader.delete(f"/api/v1/connections/{conn['id']}"),
        reader.post(f"/api/v1/connections/{conn['id']}/validate"),
        reader.post(f"/api/v1/connections/{conn['id']}/rotate", json={"api_key": "sk_test_" + "b2" * 12}),
        reader.post("/api/v1/api-keys", json={"scopes": ["admin"]}),
        reader.get("/api/v1/api-keys"),
        reader.get("/api/v1/audit-events"),
    ]
    for r in writes:
        err = error(r, 403, "insufficient_scope")
        assert err["type"] == "permission_error"
    # Nothing changed.
    assert stable(ok(tenant.api.get(f"/api/v1/connections/{conn['id']}"))) == stable(conn)
    assert [c["id"] for c in tenant.connections()] == [conn["id"]]


def test_write_scope_implies_read(tenant):
    _, writer = tenant.new_key(["connections:write"])
    ok(writer.get("/api/v1/connections"))
    created = ok(writer.post("/api/v1/connections", json={"provider": "stripe", "api_key": "sk_test_" + "c3" * 12}), 201)
    ok(writer.get(f"/api/v1/connections/{created['id']}"))
    error(writer.get("/api/v1/api-keys"), 403, "insufficient_scope")


def test_key_validation(admin: Api, tenant):
    path = f"/api/v1/tenants/{tenant.id}/api-keys"
    error(admin.post(path, json={"scopes": []}), 422, param="scopes")
    error(admin.post(path, json={"scopes": ["root"]}), 400, param="scopes[0]")
    error(admin.post(path, json={}), 400, "parameter_missing", "scopes")
    error(admin.post(path, json={"scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}), 422, param="expires_at")
    error(admin.post("/api/v1/tenants/ten_0000000000000000000000000a/api-keys", json={"scopes": ["admin"]}), 404)


def test_auth_header_forms(tenant, anon: Api):
    ok(Api(tenant.key, bearer=True).get("/api/v1/connections"))
    basic = base64.b64encode(f"{tenant.key}:".encode()).decode()
    ok(anon.get("/api/v1/connections", headers={"Authorization": f"Basic {basic}"}))
    error(anon.get("/api/v1/connections"), 401, "api_key_missing")
    error(anon.get("/api/v1/connections", headers={"Authorization": "Token abc"}), 401, "api_key_malformed")
    # A token of the right shape with a wrong secret.
    forged = tenant.key[:-6] + ("AAAAAA" if not tenant.key.endswith("AAAAAA") else "BBBBBB")
    error(Api(forged).get("/api/v1/connections"), 401, "api_key_invalid")


def test_admin_token_is_not_a_tenant_key(admin: Api):
    error(admin.get("/api/v1/connections"), 403, "tenant_key_required")
    error(admin.get("/api/v1/api-keys"), 403, "tenant_key_required")
    # The admin token does work on audit events (all tenants).
    ok(admin.get("/api/v1/audit-events"))


def test_wrong_secrets_do_not_lock_out_the_holder(admin: Api, tenant):
    # A key this server has never verified: nothing of it is in the key cache.
    created = ok(admin.post(f"/api/v1/tenants/{tenant.id}/api-keys", json={"scopes": ["admin"]}), 201)
    key = created["key"]
    forged = Api(key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB"))
    for _ in range(15):
        error(forged.get("/api/v1/connections"), 401, "api_key_invalid")
    ok(Api(key).get("/api/v1/connections"))
