"""Stripe Connect OAuth, connect sessions and CORS, driven as a browser would:
Patchbay's auth URL, the consent at the fake Connect (fake_connect.py, the
server's PATCHBAY_STRIPE_CONNECT_BASE), the redirect back to Patchbay's
callback, and Patchbay's redirect to the tenant's return_to.

localstripe is the Stripe API here: it accepts any `sk_` key as the platform
key (the test call falls back to /v1/balance) and ignores Stripe-Account."""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import (
    BASE_URL,
    FAKE_CONNECT_URL,
    Api,
    ConnectFake,
    Tenant,
    describe,
    error,
    hint_of,
    now,
    ok,
    parse_time,
    stripe_key,
    wait_for,
)

CALLBACK = BASE_URL + "/api/v1/oauth/stripe/callback"
APP = "https://app.example.com"
RETURN_TO = APP + "/done"
ALNUM = string.ascii_letters + string.digits


def new_client_id() -> str:
    return "ca_" + "".join(secrets.choice(ALNUM) for _ in range(32))


def new_account_id() -> str:
    return "acct_" + "".join(secrets.choice(ALNUM) for _ in range(16))


def query_of(url: str) -> dict[str, str]:
    """The query of a URL, one value per name (asserting there is only one)."""
    q = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in q.values()), url
    return {k: v[0] for k, v in q.items()}


def without_query(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


@dataclass
class Platform:
    """A tenant's Connect platform, configured in Patchbay and registered at the fake."""

    tenant: Tenant
    connect: ConnectFake
    client_id: str
    secret_key: str
    integration: dict

    def auth_url(self, api: Api | None = None, **params: str) -> dict:
        return ok((api or self.tenant.api).get("/api/v1/connections/stripe/auth-url", params=params))

    def grant(self, account: str) -> dict:
        (g,) = [g for g in self.connect.grants(self.client_id) if g["stripe_user_id"] == account]
        return g


def configure(tenant: Tenant, connect: ConnectFake, mode: str = "test", **fields) -> Platform:
    client_id = new_client_id()
    key = stripe_key(mode=mode)
    connect.register(client_id, key, [CALLBACK])
    body = {"client_id": client_id, "secret_key": key, "redirect_uris": [CALLBACK], "scope": "read_write", **fields}
    integration = ok(tenant.api.put("/api/v1/integrations/stripe", json=body))
    return Platform(tenant, connect, client_id, key, integration)


@pytest.fixture
def platform(tenant, connect) -> Platform:
    ok(tenant.api.put("/api/v1/settings", json={"allowed_origins": [APP]}))
    return configure(tenant, connect)


def back_to_patchbay(connect: ConnectFake, url: str, **fake_params: str) -> str:
    """The user consents (or not) at Stripe; returns the callback URL Stripe sends the browser to."""
    location = connect.consent(url, **fake_params)
    assert without_query(location) == CALLBACK, location
    return location


def callback(browser: Api, location: str) -> requests.Response:
    return browser.get(location, allow_redirects=False)


def redirected_to(r: requests.Response, target: str = RETURN_TO) -> dict[str, str]:
    """Asserts a 303 to `target` and returns the query Patchbay added."""
    assert r.status_code == 303, describe(r)
    location = r.headers["Location"]
    assert without_query(location) == target, location
    return query_of(location)


def connect_account(p: Platform, anon: Api, **params: str) -> tuple[dict, dict]:
    """The whole flow without return_to: (the connection, the fake's grant)."""
    fake = {k: params.pop(k) for k in list(params) if k.startswith("_")}
    started = p.auth_url(**params)
    r = callback(anon, back_to_patchbay(p.connect, started["url"], **fake))
    assert r.status_code in (200, 201), describe(r)
    conn = r.json()
    return conn, p.grant(conn["stripe_account_id"])


# --------------------------------------------------------------------------
# The tenant's Connect platform
# --------------------------------------------------------------------------


def test_integration_configure_read_delete(tenant, connect):
    empty = ok(tenant.api.get("/api/v1/integrations/stripe"))
    assert empty == {"object": "stripe_integration", "test": None, "live": None}
    error(tenant.api.delete("/api/v1/integrations/stripe"), 404)

    before = now()
    p = configure(tenant, connect)
    body = p.integration
    assert body["object"] == "stripe_integration" and body["live"] is None
    test = body["test"]
    assert test["livemode"] is False
    assert test["client_id"] == p.client_id
    assert test["key_hint"] == hint_of(p.secret_key)
    assert test["redirect_uris"] == [CALLBACK]
    assert test["scope"] == "read_write"
    assert "platform_account_id" in test
    assert before - timedelta(seconds=5) <= parse_time(test["created_at"]) <= now() + timedelta(seconds=5)
    assert ok(tenant.api.get("/api/v1/integrations/stripe")) == body

    # A live key sets the live platform beside the test one.
    live = configure(tenant, connect, mode="live", scope="read_only")
    assert live.integration["test"] == test
    assert live.integration["live"]["livemode"] is True
    assert live.integration["live"]["client_id"] == live.client_id
    assert live.integration["live"]["key_hint"] == hint_of(live.secret_key)
    assert live.integration["live"]["scope"] == "read_only"

    assert tenant.api.delete("/api/v1/integrations/stripe", params={"mode": "live"}).status_code == 204
    assert ok(tenant.api.get("/api/v1/integrations/stripe")) == body
    error(tenant.api.delete("/api/v1/integrations/stripe", params={"mode": "live"}), 404)
    assert tenant.api.delete("/api/v1/integrations/stripe").status_code == 204
    assert ok(tenant.api.get("/api/v1/integrations/stripe")) == empty


def test_integration_validation(tenant):
    def put(**fields):
        body = {"client_id": new_client_id(), "secret_key": stripe_key(), "redirect_uris": [CALLBACK], **fields}
        return tenant.api.put("/api/v1/integrations/stripe", json=body)

    error(put(client_id="cus_" + "C" * 20), 422, param="client_id")
    error(put(client_id="ca_"), 422, param="client_id")
    error(put(secret_key=stripe_key("pk")), 422, param="secret_key")
    # localstripe refuses restricted keys: the test call fails.
    error(put(secret_key=stripe_key("rk")), 422, param="secret_key")
    for uris in ([], ["not a url"], ["/api/v1/oauth/stripe/callback"], ["ftp://patchbay.example/cb"]):
        err = error(put(redirect_uris=uris), 422)
        assert (err.get("param") or "").startswith("redirect_uris"), err
    assert ok(tenant.api.get("/api/v1/integrations/stripe"))["test"] is None


def test_auth_url_needs_a_platform_and_a_registered_redirect(tenant, connect, anon):
    r = tenant.api.get("/api/v1/connections/stripe/auth-url")
    assert r.status_code in (409, 422), describe(r)
    error(r, r.status_code, "integration_missing")

    p = configure(tenant, connect)
    error(tenant.api.get("/api/v1/connections/stripe/auth-url", params={"redirect_uri": "https://evil.example/cb"}),
          422, param="redirect_uri")
    r = tenant.api.get("/api/v1/connections/stripe/auth-url", params={"mode": "live"})
    assert r.status_code in (409, 422), describe(r)
    # Both platforms set: the mode must be said.
    configure(tenant, connect, mode="live")
    error(tenant.api.get("/api/v1/connections/stripe/auth-url"), 422, param="mode")
    assert parse_qs(urlsplit(p.auth_url(mode="test")["url"]).query)["client_id"] == [p.client_id]
    # Without a key nothing starts.
    error(anon.get("/api/v1/connections/stripe/auth-url"), 401)


def test_auth_url_carries_the_parameters(platform):
    before = now()
    started = platform.auth_url(
        scope="read_only",
        stripe_landing="register",
        always_prompt="true",
        **{"stripe_user[email]": "owner@shop.example"},
    )
    url = started["url"]
    assert url.startswith(FAKE_CONNECT_URL + "/oauth/authorize?"), url
    q = query_of(url)
    assert q["response_type"] == "code"
    assert q["client_id"] == platform.client_id
    assert q["scope"] == "read_only"
    assert q["redirect_uri"] == CALLBACK
    assert q["stripe_landing"] == "register"
    assert q["always_prompt"] == "true"
    assert q["stripe_user[email]"] == "owner@shop.example"
    assert q["state"] == started["state"]
    assert len(started["state"]) >= 43  # 256 random bits
    expires = parse_time(started["expires_at"])
    assert before + timedelta(minutes=9) <= expires <= now() + timedelta(minutes=11)
    assert platform.auth_url()["state"] != started["state"]


# --------------------------------------------------------------------------
# The flow
# --------------------------------------------------------------------------


def test_oauth_flow_redirects_to_return_to(platform, connect, anon):
    tenant = platform.tenant
    since = connect.last_seq()
    started = platform.auth_url(external_id="user-1", return_to=RETURN_TO)
    assert query_of(started["url"])["scope"] == "read_write"
    location = back_to_patchbay(connect, started["url"])
    back = query_of(location)
    assert back["state"] == started["state"] and back["code"].startswith("ac_")

    done = redirected_to(callback(anon, location))
    assert done["status"] == "active"
    assert done["external_id"] == "user-1"
    assert set(done) == {"connection_id", "status", "external_id"}
    conn_id = done["connection_id"]
    assert conn_id.startswith("conn_")

    # Patchbay exchanged the code once, with the platform's key and client id.
    (exchange,) = connect.calls(client_id=platform.client_id, path="/oauth/token", since=since)
    assert exchange["status"] == 200
    assert exchange["form"]["grant_type"] == "authorization_code"
    assert exchange["form"]["code"] == back["code"]
    assert exchange["form"]["client_id"] == platform.client_id
    assert platform.secret_key in (exchange["form"].get("client_secret"), exchange["bearer"])
    (grant,) = connect.grants(platform.client_id)

    conn = ok(tenant.api.get(f"/api/v1/connections/{conn_id}"))
    assert conn["auth_method"] == "oauth"
    assert conn["stripe_account_id"] == grant["stripe_user_id"]
    assert conn["status"] == "active"
    assert conn["livemode"] is False
    assert conn["scope"] == "read_write"
    assert conn["external_id"] == "user-1"
    assert conn["tenant_id"] == tenant.id
    assert [c["id"] for c in tenant.connections()] == [conn_id]

    # The same callback again: the state was used up; nothing changes, no second exchange.
    error(callback(anon, location), 400, "oauth_state_invalid")
    assert [c["id"] for c in tenant.connections()] == [conn_id]
    assert len(connect.calls(client_id=platform.client_id, path="/oauth/token", since=since)) == 1


def test_callback_without_return_to_answers_the_connection_and_relinks(platform, connect, anon):
    account = new_account_id()
    conn, grant = connect_account(platform, anon, external_id="shop-9", _account=account)
    assert conn["object"] == "connection"
    assert conn["auth_method"] == "oauth" and conn["stripe_account_id"] == account
    assert conn["external_id"] == "shop-9" and conn["status"] == "active"
    assert grant["connected"] is True

    # The same account again for the same external id re-links the connection (200, same id).
    started = platform.auth_url(external_id="shop-9")
    r = callback(anon, back_to_patchbay(connect, started["url"], _account=account))
    again = ok(r, 200)
    assert again["id"] == conn["id"] and again["stripe_account_id"] == account
    assert [c["id"] for c in platform.tenant.connections()] == [conn["id"]]

    # Another account for that external id is refused and changes nothing.
    started = platform.auth_url(external_id="shop-9", return_to=RETURN_TO)
    done = redirected_to(callback(anon, back_to_patchbay(connect, started["url"])))
    assert done.get("error") in ("account_mismatch", "external_id_taken"), done
    assert "connection_id" not in done
    after = ok(platform.tenant.api.get(f"/api/v1/connections/{conn['id']}"))
    assert after["stripe_account_id"] == account
    assert [c["id"] for c in platform.tenant.connections()] == [conn["id"]]


def test_read_only_grant(platform, anon):
    conn, grant = connect_account(platform, anon, scope="read_only")
    assert conn["scope"] == "read_only" and grant["scope"] == "read_only"


def test_access_denied_redirects_and_creates_nothing(platform, connect, anon):
    since = connect.last_seq()
    started = platform.auth_url(external_id="user-2", return_to=RETURN_TO)
    location = back_to_patchbay(connect, started["url"], _deny="1")
    assert query_of(location)["error"] == "access_denied"
    done = redirected_to(callback(anon, location))
    assert done["error"] == "access_denied"
    assert done.get("error_description")
    assert "connection_id" not in done
    assert connect.calls(client_id=platform.client_id, path="/oauth/token", since=since) == []
    assert platform.tenant.connections() == []
    # The state is used up by the answer, whatever it was.
    error(callback(anon, location), 400, "oauth_state_invalid")
    # The external id is still free.
    conn, _ = connect_account(platform, anon, external_id="user-2")
    assert conn["external_id"] == "user-2"


def test_access_denied_without_return_to(platform, connect, anon):
    location = back_to_patchbay(connect, platform.auth_url()["url"], _deny="1")
    err = error(callback(anon, location), 400, "access_denied")
    assert err["type"] == "invalid_request_error"
    assert platform.tenant.connections() == []


def test_unknown_or_missing_state(platform, connect, anon):
    started = platform.auth_url(return_to=RETURN_TO)
    location = back_to_patchbay(connect, started["url"])
    code = query_of(location)["code"]
    forged = secrets.token_urlsafe(32)
    for params in (
        {"code": code, "scope": "read_write", "state": forged},
        {"code": code, "scope": "read_write", "state": started["state"][:-1]},
        {"error": "access_denied", "state": forged},
    ):
        r = anon.get("/api/v1/oauth/stripe/callback", params=params, allow_redirects=False)
        error(r, 400, "oauth_state_invalid")  # JSON, never a redirect to a return_to
    r = anon.get("/api/v1/oauth/stripe/callback", params={"code": code, "scope": "read_write"}, allow_redirects=False)
    error(r, 400)
    assert connect.calls(client_id=platform.client_id, path="/oauth/token") == []
    assert platform.tenant.connections() == []
    # The real state still works afterwards.
    assert redirected_to(callback(anon, location))["status"] == "active"


def test_concurrent_callbacks_create_one_connection(platform, connect, anon):
    location = back_to_patchbay(connect, platform.auth_url(external_id="race")["url"])
    results: list[requests.Response] = []
    barrier = threading.Barrier(4)

    def hit() -> None:
        browser = Api()
        barrier.wait()
        results.append(callback(browser, location))

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 400, 400, 400], [describe(r) for r in results]
    for r in results:
        if r.status_code == 400:
            error(r, 400, "oauth_state_invalid")
    assert len(platform.tenant.connections()) == 1


def test_code_already_redeemed_is_invalid_grant(platform, connect, anon):
    started = platform.auth_url(return_to=RETURN_TO)
    location = back_to_patchbay(connect, started["url"])
    code = query_of(location)["code"]
    # Someone else redeemed the code first.
    r = connect.http.post(
        f"{connect.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": platform.client_id},
        headers={"Authorization": f"Bearer {platform.secret_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    connect.grants(platform.client_id)  # its tokens are secrets too
    done = redirected_to(callback(anon, location))
    assert done["error"] == "invalid_grant"
    assert code not in done.get("error_description", "")
    assert platform.tenant.connections() == []


def test_stripe_down_at_the_callback(platform, connect, anon):
    started = platform.auth_url(return_to=RETURN_TO)
    location = back_to_patchbay(connect, started["url"])
    connect.down("token")
    done = redirected_to(callback(anon, location))
    assert done["error"] == "stripe_unavailable"
    assert platform.tenant.connections() == []

    # Without return_to: a JSON 502/503.
    location = back_to_patchbay(connect, platform.auth_url()["url"])
    r = callback(anon, location)
    assert r.status_code in (502, 503), describe(r)
    assert platform.tenant.connections() == []
    connect.up()
    conn, _ = connect_account(platform, anon)
    assert conn["status"] == "active"


# --------------------------------------------------------------------------
# An OAuth connection's life: refresh, delete (deauthorize)
# --------------------------------------------------------------------------


def test_refresh_uses_the_refresh_token_and_platform_key(platform, connect, anon):
    conn, grant = connect_account(platform, anon)
    since = connect.last_seq()
    refreshed = ok(platform.tenant.api.post(f"/api/v1/connections/{conn['id']}/refresh"))
    assert refreshed["id"] == conn["id"]
    assert refreshed["status"] == "active" and refreshed["stripe_account_id"] == conn["stripe_account_id"]
    (call,) = connect.calls(client_id=platform.client_id, path="/oauth/token", since=since)
    assert call["status"] == 200
    assert call["form"]["grant_type"] == "refresh_token"
    assert call["form"]["refresh_token"] == grant["refresh_token"]
    assert platform.secret_key in (call["form"].get("client_secret"), call["bearer"])
    connect.grants(platform.client_id)  # the new access token is a secret too
    error(platform.tenant.api.post("/api/v1/connections/conn_" + "0" * 26 + "/refresh"), 404, "resource_missing")


def test_delete_deauthorizes_at_stripe(platform, connect, anon):
    conn, grant = connect_account(platform, anon)
    account = conn["stripe_account_id"]
    since = connect.last_seq()
    deleted = ok(platform.tenant.api.delete(f"/api/v1/connections/{conn['id']}"))
    assert deleted == {"id": conn["id"], "object": "connection", "deleted": True}
    (call,) = connect.calls(client_id=platform.client_id, path="/oauth/deauthorize", since=since)
    assert call["status"] == 200
    assert call["form"]["client_id"] == platform.client_id
    assert call["form"]["stripe_user_id"] == account
    assert platform.secret_key in (call["bearer"], call["form"].get("client_secret"))
    assert platform.grant(account)["connected"] is False
    error(platform.tenant.api.get(f"/api/v1/connections/{conn['id']}"), 404, "resource_missing")
    assert platform.tenant.connections() == []


def test_delete_while_stripe_is_down_finishes_later(platform, connect, anon):
    conn, _ = connect_account(platform, anon)
    account = conn["stripe_account_id"]
    api = platform.tenant.api
    connect.down("deauthorize")
    r = api.delete(f"/api/v1/connections/{conn['id']}")
    revoking = ok(r, 202)
    assert revoking["id"] == conn["id"] and revoking["status"] == "revoking"
    assert ok(api.get(f"/api/v1/connections/{conn['id']}"))["status"] == "revoking"
    calls = connect.calls(client_id=platform.client_id, path="/oauth/deauthorize")
    assert calls and all(c["status"] == 503 for c in calls)
    assert platform.grant(account)["connected"] is True

    connect.up()
    wait_for(lambda: api.get(f"/api/v1/connections/{conn['id']}").status_code == 404, 20, what="the deletion")
    assert platform.grant(account)["connected"] is False
    last = connect.calls(client_id=platform.client_id, path="/oauth/deauthorize")[-1]
    assert last["status"] == 200 and last["form"]["stripe_user_id"] == account
    assert platform.tenant.connections() == []


def test_integration_in_use(platform, connect, anon):
    conn, _ = connect_account(platform, anon)
    api = platform.tenant.api
    error(api.delete("/api/v1/integrations/stripe"), 409, "integration_in_use")
    assert ok(api.get(f"/api/v1/connections/{conn['id']}"))["status"] == "active"
    assert ok(api.get("/api/v1/integrations/stripe"))["test"]["client_id"] == platform.client_id
    r = api.delete("/api/v1/integrations/stripe", params={"force": "true"})
    assert r.status_code == 204, describe(r)
    error(api.get(f"/api/v1/connections/{conn['id']}"), 404)
    assert ok(api.get("/api/v1/integrations/stripe"))["test"] is None


# --------------------------------------------------------------------------
# Connect sessions: a browser starts the flow with a short-lived token
# --------------------------------------------------------------------------


def new_session(tenant: Tenant, **fields) -> dict:
    body = {"external_id": "user-42", "allowed": ["oauth", "api_key"], "return_to": RETURN_TO, **fields}
    return ok(tenant.api.post("/api/v1/connect-sessions", json=body), 201)


def test_connect_session_oauth_flow(platform, connect, anon):
    tenant = platform.tenant
    session = new_session(tenant, allowed=["oauth"])
    assert session["object"] == "connect_session"
    assert session["external_id"] == "user-42" and session["allowed"] == ["oauth"]
    assert parse_time(session["expires_at"]) > now()
    browser = Api(session["token"], bearer=True)
    browser.headers["Origin"] = APP

    r = browser.get("/api/v1/connections/stripe/auth-url")
    started = ok(r)
    assert r.headers.get("Access-Control-Allow-Origin") == APP, describe(r)
    done = redirected_to(callback(anon, back_to_patchbay(connect, started["url"])))
    assert done["status"] == "active" and done["external_id"] == "user-42"
    conn = ok(tenant.api.get(f"/api/v1/connections/{done['connection_id']}"))
    assert conn["external_id"] == "user-42" and conn["auth_method"] == "oauth"

    # The session did its job.
    error(browser.get("/api/v1/connections/stripe/auth-url"), 403, "session_used")
    assert len(tenant.connections()) == 1


def test_connect_session_forces_its_external_id(platform, connect, anon):
    session = new_session(platform.tenant, external_id="user-77", allowed=["oauth"])
    browser = Api(session["token"], bearer=True)
    error(browser.get("/api/v1/connections/stripe/auth-url", params={"external_id": "someone-else"}), 403,
          "session_scope_mismatch")
    # Only the return_to it fixed; its own external id may be said.
    r = browser.get("/api/v1/connections/stripe/auth-url", params={"return_to": APP + "/elsewhere"})
    assert 400 <= r.status_code < 500, describe(r)
    started = ok(browser.get("/api/v1/connections/stripe/auth-url", params={"external_id": "user-77"}))
    done = redirected_to(callback(anon, back_to_patchbay(connect, started["url"])))
    assert done["external_id"] == "user-77"
    assert [c["external_id"] for c in platform.tenant.connections()] == ["user-77"]


def test_connect_session_reaches_two_routes_only(platform):
    session = new_session(platform.tenant)
    browser = Api(session["token"], bearer=True)
    error(browser.get("/api/v1/connections"), 403, "session_forbidden")
    error(browser.get("/api/v1/settings"), 403, "session_forbidden")
    error(browser.get("/api/v1/integrations/stripe"), 403, "session_forbidden")
    error(browser.post("/api/v1/connect-sessions", json={"external_id": "x", "allowed": ["oauth"]}), 403,
          "session_forbidden")
    conn = platform.tenant.connect()
    error(browser.get(f"/api/v1/connections/{conn['id']}"), 403, "session_forbidden")
    error(browser.delete(f"/api/v1/connections/{conn['id']}"), 403, "session_forbidden")
    assert ok(platform.tenant.api.get(f"/api/v1/connections/{conn['id']}"))["status"] == "active"

    token = session["token"]
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    error(Api(tampered, bearer=True).get("/api/v1/connections/stripe/auth-url"), 401, "session_invalid")


def test_connect_session_api_key_route(platform):
    tenant = platform.tenant
    only_keys = new_session(tenant, external_id="user-5", allowed=["api_key"])
    browser = Api(only_keys["token"], bearer=True)
    error(browser.get("/api/v1/connections/stripe/auth-url"), 403)
    r = browser.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key(), "external_id": "user-6"})
    error(r, 403, "session_scope_mismatch")
    assert tenant.connections() == []
    conn = ok(browser.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key()}), 201)
    assert conn["external_id"] == "user-5" and conn["auth_method"] == "secret_key"
    error(browser.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key()}), 403, "session_used")
    assert [c["id"] for c in tenant.connections()] == [conn["id"]]


def test_connect_session_validation(tenant):
    for body in (
        {"external_id": "u", "allowed": ["telepathy"]},
        {"external_id": "u", "allowed": ["oauth"], "return_to": "not a url"},
        {"allowed": ["oauth"]},
    ):
        r = tenant.api.post("/api/v1/connect-sessions", json=body)
        assert r.status_code in (400, 422), describe(r)


# --------------------------------------------------------------------------
# CORS
# --------------------------------------------------------------------------


def preflight(path: str, origin: str, method: str = "GET", headers: str = "authorization") -> requests.Response:
    return Api().options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def test_settings_origins(tenant):
    assert ok(tenant.api.get("/api/v1/settings")) == {"object": "tenant_settings", "allowed_origins": []}
    origins = sorted([APP, "http://localhost:3000", "http://127.0.0.1:8080"])
    assert sorted(ok(tenant.api.put("/api/v1/settings", json={"allowed_origins": origins}))["allowed_origins"]) == origins
    assert sorted(ok(tenant.api.get("/api/v1/settings"))["allowed_origins"]) == origins
    for bad in ("http://app.example.com", "https://app.example.com/path", "app.example.com", "ftp://app.example.com"):
        error(tenant.api.put("/api/v1/settings", json={"allowed_origins": [APP, bad]}), 422, param="allowed_origins[1]")
    too_many = [f"https://app{i}.example.com" for i in range(21)]
    error(tenant.api.put("/api/v1/settings", json={"allowed_origins": too_many}), 422)
    assert sorted(ok(tenant.api.get("/api/v1/settings"))["allowed_origins"]) == origins


def test_cors_preflight_and_requests(platform, other_tenant):
    origin_b = "https://b-" + secrets.token_hex(4) + ".example.com"
    ok(other_tenant.api.put("/api/v1/settings", json={"allowed_origins": [origin_b]}))

    for path, method in (("/api/v1/connections/stripe/auth-url", "GET"), ("/api/v1/connections", "POST")):
        r = preflight(path, APP, method, "authorization, content-type")
        assert r.status_code in (200, 204), describe(r)
        assert r.headers.get("Access-Control-Allow-Origin") == APP, describe(r)
        allowed = r.headers.get("Access-Control-Allow-Headers", "").lower()
        assert "authorization" in allowed and "x-api-key" not in allowed, allowed

    unlisted = preflight("/api/v1/connections/stripe/auth-url", "https://evil-" + secrets.token_hex(4) + ".example")
    assert "Access-Control-Allow-Origin" not in unlisted.headers, describe(unlisted)
    wants_key = preflight("/api/v1/connections/stripe/auth-url", APP, headers="x-api-key")
    assert "x-api-key" not in wants_key.headers.get("Access-Control-Allow-Headers", "").lower()
    other_route = preflight("/api/v1/tenants", APP)
    assert "Access-Control-Allow-Origin" not in other_route.headers, describe(other_route)

    # A session's request from an origin only another tenant lists is refused, without CORS headers.
    browser = Api(new_session(platform.tenant, allowed=["oauth"])["token"], bearer=True)
    r = browser.get("/api/v1/connections/stripe/auth-url", headers={"Origin": origin_b})
    error(r, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in r.headers, describe(r)
    # Requests with a tenant key never get CORS headers.
    r = platform.tenant.api.get("/api/v1/connections/stripe/auth-url", headers={"Origin": APP})
    ok(r)
    assert "Access-Control-Allow-Origin" not in r.headers, describe(r)
