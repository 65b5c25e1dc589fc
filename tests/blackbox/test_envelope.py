"""The edges every client meets: health, the documents, request ids, and the
one error envelope (also on routes and methods that do not exist)."""

from conftest import REPLICAS, Api, error, ok


def test_health_and_documents(anon: Api):
    assert ok(anon.get("/healthz"))["status"] == "ok"
    ready = ok(anon.get("/readyz"))
    # One server runs on SQLite; replicas share PostgreSQL (scripts/blackbox-replicas).
    assert ready == {"status": "ready", "database": "postgres" if REPLICAS > 1 else "sqlite"}
    doc = ok(anon.get("/openapi.json"))
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/tenants", "/api/v1/connections", "/api/v1/connections/{id}/rotate", "/api/v1/audit-events"):
        assert path in doc["paths"], path
    docs = anon.get("/docs/")
    assert docs.status_code == 200 and "html" in docs.headers.get("content-type", "")


def test_request_ids(anon: Api, tenant):
    a = anon.get("/healthz")
    b = anon.get("/healthz")
    assert a.headers["x-request-id"] and a.headers["x-request-id"] != b.headers["x-request-id"]
    # The client's own id never becomes the request id: it is echoed apart.
    mine = anon.get("/healthz", headers={"x-request-id": "blackbox-123_a.b"})
    assert mine.headers["x-request-id"].startswith("req_")
    assert mine.headers["x-client-request-id"] == "blackbox-123_a.b"
    # An unreasonable one is neither used nor echoed.
    weird = anon.get("/healthz", headers={"x-request-id": "x" * 100})
    assert weird.headers["x-request-id"] != "x" * 100
    assert "x-client-request-id" not in weird.headers
    r = tenant.api.get("/api/v1/connections/conn_nope", headers={"x-request-id": "blackbox-err-1"})
    err = error(r, 400)
    assert err["request_id"] == r.headers["x-request-id"] != "blackbox-err-1"
    assert r.headers["x-client-request-id"] == "blackbox-err-1"


def test_errors_share_one_envelope(anon: Api, tenant):
    # The autouse check verifies the envelope and x-request-id of each of these.
    error(anon.get("/nowhere"), 404, "route_not_found")
    error(anon.get("/api/v1/nowhere"), 404, "route_not_found")
    error(anon.put("/api/v1/tenants"), 405)
    error(tenant.api.delete("/api/v1/connections"), 405)
    error(anon.get("/api/v1/connections"), 401, "api_key_missing")
    error(anon.get("/api/v1/connections", headers={"x-api-key": "pbk_nonsense"}), 401)
    error(anon.get("/api/v1/connections", headers={"Authorization": "Bearer"}), 401)
    error(tenant.api.post("/api/v1/connections", data="{", headers={"content-type": "application/json"}), 400, "body_invalid_json")
    error(tenant.api.post("/api/v1/connections", data="", headers={"content-type": "application/json"}), 400, "body_missing")
    error(tenant.api.post("/api/v1/connections", data="[]", headers={"content-type": "application/json"}), 400)
    error(tenant.api.post("/api/v1/connections", data="{}", headers={"content-type": "text/plain"}), 415, "content_type_invalid")
    error(tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": "x"}, headers={"content-type": "application/json; charset=utf-8"}), 422)
    big = "x" * (1024 * 1024 + 10)
    error(tenant.api.post("/api/v1/connections", data='{"name":"' + big + '"}', headers={"content-type": "application/json"}), 413, "body_too_large")
