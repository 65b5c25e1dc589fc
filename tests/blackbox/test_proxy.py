"""The raw proxy with the official SDKs, unchanged: Python's `stripe` (pinned in
requirements.txt) through /api/v1/connections/{id}/proxy with a tenant key, and
at the root (/v1/…) with a key bound to the connection; Node's `stripe`
(tests/blackbox/node, pinned in package-lock.json, installed by scripts/blackbox)
with a bound key. localstripe is Stripe: its request log (localstripe_server.py's
/_blackbox/requests) shows which credential arrived upstream, and its
/_blackbox/refuse_key stands for a key rolled in Stripe's dashboard.

What localstripe cannot show, and is therefore not checked here: Stripe's real
messages ("No such customer: 'cus_…'"; localstripe says "Not Found"), Request-Id
headers (localstripe sends none), and /v1/account (it has none).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import stripe

from conftest import BASE_URL, LOCALSTRIPE_URL, Api, Tenant, error, ok, stripe_key, unique, wait_for

NODE_DIR = Path(__file__).resolve().parent / "node"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


DIRECT_MARK = "x-blackbox-direct"

# Patchbay's own test calls (creation, validation, the background re-validation
# every 2 s under scripts/blackbox) reach localstripe with the connection's key too.
TEST_CALLS = {("GET", "/v1/account"), ("GET", "/v1/balance")}


def proxied_calls(seen: list[dict], secret: str) -> list[dict]:
    """The requests in `seen` made with this key, but for Patchbay's own test calls
    and the test's own direct calls (Upstream.direct)."""
    return [
        r
        for r in seen
        if r["key_sha256"] == sha256(secret)
        and (r["method"], r["path"]) not in TEST_CALLS
        and DIRECT_MARK not in r["header_names"]
    ]


def error_code(e: stripe.StripeError) -> str | None:
    """The `code` of the error body (the SDK sets `.code` on some classes only)."""
    return (e.json_body or {}).get("error", {}).get("code")


class Upstream:
    """localstripe's own view: what reached it, and keys it is told to refuse."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def last_seq(self) -> int:
        r = self.http.get(f"{self.url}/_blackbox/requests", params={"since": 1 << 62}, timeout=10)
        r.raise_for_status()
        return r.json()["last_seq"]

    def since(self, seq: int) -> list[dict]:
        r = self.http.get(f"{self.url}/_blackbox/requests", params={"since": seq}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]

    def refuse(self, key: str, paths: list[str]) -> None:
        r = self.http.post(f"{self.url}/_blackbox/refuse_key", json={"key": key, "paths": paths}, timeout=10)
        r.raise_for_status()

    def direct(self, key: str, method: str, path: str) -> requests.Response:
        """The same call made to localstripe itself, with the connection's key."""
        headers = {"Authorization": f"Bearer {key}", DIRECT_MARK: "1"}
        return self.http.request(method, self.url + path, headers=headers, timeout=10)


@pytest.fixture(scope="session")
def upstream() -> Upstream:
    return Upstream(LOCALSTRIPE_URL)


@dataclass
class Proxied:
    """A tenant, its key with `connections:write` and `proxy`, and a connection
    that key made from a fresh sk_test key."""

    tenant: Tenant
    key: str
    key_id: str
    api: Api
    conn: str
    secret: str

    @property
    def base(self) -> str:
        return f"{BASE_URL}/api/v1/connections/{self.conn}/proxy"

    def bind(self) -> dict:
        """A key with the `proxy` scope bound to the connection (made with the tenant's admin key)."""
        bound = ok(self.tenant.api.post("/api/v1/api-keys", json={"scopes": ["proxy"], "connection_id": self.conn}), 201)
        assert bound["connection_id"] == self.conn
        assert bound["scopes"] == ["proxy"]
        return bound

    def proxy_events(self, at_least: int) -> list[dict]:
        """This connection's proxy.request audit events, newest first, once at least this many are written."""

        def events() -> list[dict] | None:
            out: list[dict] = []
            after = None
            while True:
                q: dict[str, Any] = {"action": "proxy.request", "target_id": self.conn, "limit": 100}
                if after:
                    q["starting_after"] = after
                page = ok(self.tenant.api.get("/api/v1/audit-events", params=q))
                out += page["data"]
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
            return out if len(out) >= at_least else None

        return wait_for(events, timeout=15, what=f"{at_least} proxy.request audit events of {self.conn}")


@pytest.fixture
def proxied(tenant: Tenant) -> Proxied:
    created, api = tenant.new_key(["connections:write", "proxy"], name="proxy")
    secret = stripe_key()
    conn = ok(api.post("/api/v1/connections", json={"provider": "stripe", "api_key": secret, "name": "proxied"}), 201)
    assert conn["status"] == "active", conn
    return Proxied(tenant=tenant, key=created["key"], key_id=created["id"], api=api, conn=conn["id"], secret=secret)


def raw_get(path: str, key: str) -> tuple[int, Any]:
    """A GET with the path exactly as given (no dot-segment resolution)."""
    url = urlsplit(BASE_URL)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path, headers={"x-api-key": key})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def sdk(api_key: str, base: str) -> stripe.StripeClient:
    """The SDK as an application builds it; only the API base address differs from Stripe's."""
    return stripe.StripeClient(api_key, base_addresses={"api": base})


def missing_customer_id() -> str:
    return "cus_" + unique("missing").replace("-", "")


def customer_flow(client: stripe.StripeClient, email: str) -> str:
    """Create, retrieve, update, list, delete one customer; returns its id."""
    customer = client.v1.customers.create(
        params={"email": email, "name": "Proxy Flow", "metadata": {"suite": "blackbox", "step": "created"}}
    )
    assert customer.id.startswith("cus_") and customer.object == "customer"
    assert customer.email == email and customer.name == "Proxy Flow"
    assert customer.metadata.to_dict() == {"suite": "blackbox", "step": "created"}

    fetched = client.v1.customers.retrieve(customer.id)
    assert (fetched.id, fetched.email, fetched.name) == (customer.id, email, "Proxy Flow")

    updated = client.v1.customers.update(customer.id, params={"name": "Proxy Flow 2", "metadata": {"step": "updated"}})
    assert updated.id == customer.id and updated.name == "Proxy Flow 2"
    assert updated.metadata.to_dict() == {"suite": "blackbox", "step": "updated"}
    assert client.v1.customers.retrieve(customer.id).name == "Proxy Flow 2"

    listed = client.v1.customers.list(params={"email": email, "limit": 10})
    assert listed.object == "list" and [c.id for c in listed.data] == [customer.id]

    deleted = client.v1.customers.delete(customer.id)
    assert deleted.id == customer.id and deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.customers.retrieve(customer.id)
    assert gone.value.http_status == 404
    return customer.id


def payment_flow(client: stripe.StripeClient) -> str:
    """A payment intent created, then confirmed with localstripe's test card (pm_card_visa)."""
    intent = client.v1.payment_intents.create(params={"amount": 1999, "currency": "eur", "payment_method": "pm_card_visa"})
    assert intent.id.startswith("pi_") and intent.status == "requires_confirmation"
    confirmed = client.v1.payment_intents.confirm(intent.id)
    assert confirmed.id == intent.id and confirmed.status == "succeeded"
    assert confirmed.amount == 1999 and confirmed.currency == "eur"
    charge = confirmed.latest_charge
    charge_id = charge if isinstance(charge, str) else charge.id
    assert charge_id.startswith("ch_")
    return intent.id


def assert_not_found_verbatim(client: stripe.StripeClient, proxied: Proxied, upstream: Upstream) -> None:
    """A missing customer: the SDK's own exception, with exactly what Stripe (localstripe) said."""
    missing = missing_customer_id()
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve(missing)
    direct = upstream.direct(proxied.secret, "GET", f"/v1/customers/{missing}")
    assert direct.status_code == 404
    assert raised.value.http_status == 404
    assert raised.value.json_body == direct.json()
    assert raised.value.user_message == direct.json()["error"]["message"]


def assert_only_the_connection_key_went_upstream(upstream: Upstream, seq: int, proxied: Proxied, *patchbay_keys: str) -> list[dict]:
    """Every request localstripe received since `seq` with this test's credentials
    carried the connection's key; none carried a Patchbay key or its headers."""
    seen = upstream.since(seq)
    forbidden = {sha256(k) for k in patchbay_keys}
    assert not [r for r in seen if r["key_sha256"] in forbidden], "a Patchbay key reached Stripe"
    for r in seen:
        if r["key_sha256"] != sha256(proxied.secret):
            continue
        leaked = set(r["header_names"]) & {"x-api-key", "cookie", "patchbay-retry"}
        assert not leaked, f"{r['method']} {r['path']} carried {sorted(leaked)} upstream"
    mine = proxied_calls(seen, proxied.secret)
    assert mine, "nothing reached localstripe with the connection's key"
    return mine


# --------------------------------------------------------------------------
# Python, tenant key, /api/v1/connections/{id}/proxy
# --------------------------------------------------------------------------


def test_python_sdk_through_the_connection_proxy(proxied: Proxied, upstream: Upstream):
    seq = upstream.last_seq()
    client = sdk(proxied.key, proxied.base)
    email = f"{unique('proxy')}@example.com"

    customer = customer_flow(client, email)
    payment_flow(client)
    assert_not_found_verbatim(client, proxied, upstream)

    mine = assert_only_the_connection_key_went_upstream(upstream, seq, proxied, proxied.key, proxied.tenant.key)
    calls = [(r["method"], r["path"]) for r in mine]
    for expected in [
        ("POST", "/v1/customers"),
        ("GET", f"/v1/customers/{customer}"),
        ("POST", f"/v1/customers/{customer}"),
        ("GET", "/v1/customers"),
        ("DELETE", f"/v1/customers/{customer}"),
        ("POST", "/v1/payment_intents"),
    ]:
        assert expected in calls, f"{expected} did not reach localstripe: {calls}"
    listing = next(r for r in mine if r["method"] == "GET" and r["path"] == "/v1/customers")
    assert listing["query_keys"] == ["email", "limit"]
    # The SDK's own headers arrive: its API version, and an idempotency key on POSTs.
    create = next(r for r in mine if r["method"] == "POST" and r["path"] == "/v1/customers")
    assert {"stripe-version", "idempotency-key", "content-type"} <= set(create["header_names"])

    # Each call is audited: method, path, query parameter names (never values), status.
    events = proxied.proxy_events(at_least=len(calls))
    by_call = {(e["details"]["method"], e["details"]["path"], e["details"]["status"]): e for e in events}
    assert ("POST", "v1/customers", 200) in by_call
    assert ("DELETE", f"v1/customers/{customer}", 200) in by_call
    assert ("GET", f"v1/customers/{customer}", 404) in by_call  # after the delete
    listed = by_call[("GET", "v1/customers", 200)]
    assert listed["details"]["query_keys"] == ["email", "limit"]
    for e in events:
        assert e["actor"] == proxied.key_id and e["target_id"] == proxied.conn
        assert e["request_id"], e
        assert email not in json.dumps(e), "a query value was written to the audit log"
        assert isinstance(e["details"]["duration_ms"], int)


def test_python_sdk_auto_pagination_over_120_customers(proxied: Proxied, upstream: Upstream):
    client = sdk(proxied.key, proxied.base)
    email = f"{unique('pages')}@example.com"
    created = [client.v1.customers.create(params={"email": email, "metadata": {"n": str(i)}}).id for i in range(120)]

    seq = upstream.last_seq()
    walked = [c.id for c in client.v1.customers.list(params={"email": email, "limit": 50}).auto_paging_iter()]
    assert len(walked) == 120 and len(set(walked)) == 120
    assert set(walked) == set(created)

    pages = [r for r in proxied_calls(upstream.since(seq), proxied.secret) if r["path"] == "/v1/customers"]
    assert [r["query_keys"] for r in pages] == [
        ["email", "limit"],
        ["email", "limit", "starting_after"],
        ["email", "limit", "starting_after"],
    ]


def test_a_key_stripe_refuses_raises_the_sdks_authentication_error(proxied: Proxied, upstream: Upstream):
    client = sdk(proxied.key, proxied.base)
    assert client.v1.customers.list(params={"limit": 1}).object == "list"

    # The key is rolled at Stripe for customers (localstripe's test calls on
    # /v1/balance still pass, so the connection stays active meanwhile).
    upstream.refuse(proxied.secret, ["/v1/customers"])
    with pytest.raises(stripe.AuthenticationError) as raised:
        client.v1.customers.list(params={"limit": 1})
    direct = upstream.direct(proxied.secret, "GET", "/v1/customers?limit=1")
    assert direct.status_code == 401
    assert raised.value.http_status == 401
    assert raised.value.json_body == direct.json()
    assert raised.value.user_message.startswith("Invalid API Key provided: sk_test_")
    assert ok(proxied.api.get(f"/api/v1/connections/{proxied.conn}"))["status"] == "active"
    events = proxied.proxy_events(at_least=2)
    assert events[0]["details"]["status"] == 401 and events[0]["details"]["path"] == "v1/customers"

    # Rolled everywhere: validating finds it invalid, and the proxy stops at Patchbay.
    upstream.refuse(proxied.secret, ["/"])
    checked = ok(proxied.api.post(f"/api/v1/connections/{proxied.conn}/validate"))
    assert checked["status"] == "invalid" and checked["last_error"]["code"] == "stripe_key_invalid"
    seq = upstream.last_seq()
    error(proxied.api.get(f"/api/v1/connections/{proxied.conn}/proxy/v1/customers"), 409, "connection_not_active")
    assert not proxied_calls(upstream.since(seq), proxied.secret)


def test_only_stripes_headers_are_forwarded(proxied: Proxied, upstream: Upstream):
    seq = upstream.last_seq()
    r = proxied.api.get(
        f"/api/v1/connections/{proxied.conn}/proxy/v1/customers",
        params={"limit": 3},
        headers={
            "Cookie": "session=abc",
            "X-Custom-Thing": "1",
            "Patchbay-Retry": "off",
            "Stripe-Version": "2024-06-20",
            "Idempotency-Key": unique("idem"),
        },
    )
    body = ok(r)
    assert body["object"] == "list" and len(body["data"]) <= 3
    (arrived,) = proxied_calls(upstream.since(seq), proxied.secret)
    assert arrived["method"] == "GET" and arrived["path"] == "/v1/customers" and arrived["query_keys"] == ["limit"]
    names = set(arrived["header_names"])
    assert {"stripe-version", "idempotency-key", "authorization"} <= names
    assert not names & {"x-api-key", "cookie", "x-custom-thing", "patchbay-retry"}, sorted(names)


def test_patchbays_own_refusals_reach_the_sdk_as_its_errors(proxied: Proxied, upstream: Upstream, other_tenant: Tenant):
    # An unknown key: Patchbay's 401 is Stripe-shaped, so the SDK raises AuthenticationError.
    with pytest.raises(stripe.AuthenticationError) as unknown:
        sdk("pbk_" + "x" * 40, proxied.base).v1.customers.list()
    assert unknown.value.http_status == 401

    # A key without the proxy scope: PermissionError, code insufficient_scope.
    _, reader = proxied.tenant.new_key(["connections:read"], name="reader")
    with pytest.raises(stripe.PermissionError) as scope:
        sdk(reader.token, proxied.base).v1.customers.list()
    assert scope.value.http_status == 403 and error_code(scope.value) == "insufficient_scope"
    error(reader.get(f"/api/v1/connections/{proxied.conn}/proxy/v1/customers"), 403, "insufficient_scope")

    # Paths that try to leave /v1/ are refused before anything is sent.
    seq = upstream.last_seq()
    for path in ("v1/customers/..%2f..%2fadmin", "v3/customers", "v1/customers/%2e%2e", "v1/customers/%252e"):
        error(proxied.api.get(f"/api/v1/connections/{proxied.conn}/proxy/{path}"), 400, "path_invalid", "path")
    # Literal dot segments, sent as they are (requests would resolve them first).
    for path in ("v1/../v1/customers", "v1/customers/../../../api/v1/tenants"):
        status, body = raw_get(f"/api/v1/connections/{proxied.conn}/proxy/{path}", proxied.key)
        assert status == 400 and body["error"]["code"] == "path_invalid", (path, status, body)
    # A connection that is not active (pending validation) is a 409.
    pending = ok(
        proxied.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key(), "validate": False}),
        201,
    )
    assert pending["status"] == "pending"
    error(proxied.api.get(f"/api/v1/connections/{pending['id']}/proxy/v1/customers"), 409, "connection_not_active")
    # Another tenant's connection does not exist for this key.
    foreign_secret = stripe_key()
    foreign = other_tenant.connect(foreign_secret)
    error(proxied.api.get(f"/api/v1/connections/{foreign['id']}/proxy/v1/customers"), 404)
    seen = upstream.since(seq)
    assert not proxied_calls(seen, proxied.secret) and not proxied_calls(seen, foreign_secret)


# --------------------------------------------------------------------------
# Bound keys: the root paths, like a Stripe key
# --------------------------------------------------------------------------


def test_python_sdk_with_a_bound_key_at_the_root(proxied: Proxied, upstream: Upstream):
    bound = proxied.bind()
    seq = upstream.last_seq()
    client = sdk(bound["key"], BASE_URL)

    customer_flow(client, f"{unique('bound')}@example.com")
    payment_flow(client)
    assert_not_found_verbatim(client, proxied, upstream)
    assert_only_the_connection_key_went_upstream(upstream, seq, proxied, bound["key"], proxied.key, proxied.tenant.key)
    events = proxied.proxy_events(at_least=1)
    assert events[0]["actor"] == bound["id"]

    # A bound key calls nothing but the root paths of its connection.
    as_bound = Api(bound["key"])
    error(as_bound.get("/api/v1/connections"), 403, "api_key_bound")
    error(as_bound.get(f"/api/v1/connections/{proxied.conn}"), 403, "api_key_bound")
    error(as_bound.get(f"/api/v1/connections/{proxied.conn}/proxy/v1/customers"), 403, "api_key_bound")
    with pytest.raises(stripe.PermissionError) as refused:
        sdk(bound["key"], proxied.base).v1.customers.list()
    assert refused.value.http_status == 403 and error_code(refused.value) == "api_key_bound"

    # An unbound key at the root paths: 400 api_key_not_bound (the SDK: InvalidRequestError).
    error(proxied.api.get("/v1/customers"), 400, "api_key_not_bound")
    with pytest.raises(stripe.InvalidRequestError) as unbound:
        sdk(proxied.key, BASE_URL).v1.customers.list()
    assert unbound.value.http_status == 400 and error_code(unbound.value) == "api_key_not_bound"


# --------------------------------------------------------------------------
# Node
# --------------------------------------------------------------------------


def test_node_sdk_with_a_bound_key(proxied: Proxied, upstream: Upstream):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "stripe" / "package.json").is_file():
        pytest.fail("Node.js and tests/blackbox/node/node_modules are needed: scripts/blackbox installs them (npm ci)")
    pinned = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]["node_modules/stripe"]["version"]

    bound = proxied.bind()
    url = urlsplit(BASE_URL)
    email = f"{unique('node')}@example.com"
    missing = missing_customer_id()
    seq = upstream.last_seq()
    run = subprocess.run(
        [node, "sdk_flow.mjs"],
        cwd=NODE_DIR,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PATCHBAY_HOST": url.hostname or "127.0.0.1",
            "PATCHBAY_PORT": str(url.port or 80),
            "PATCHBAY_BOUND_KEY": bound["key"],
            "FLOW_EMAIL": email,
            "FLOW_COUNT": "30",
            "FLOW_PAGE_SIZE": "7",
            "FLOW_MISSING_ID": missing,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"sdk_flow.mjs exited {run.returncode}:\n{run.stderr[-3000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["sdk_version"] == pinned
    first = out["created"]
    assert first["id"].startswith("cus_") and first["object"] == "customer"
    assert (first["email"], first["name"], first["metadata"]) == (email, "Node Flow", {"suite": "blackbox", "sdk": "node"})
    assert out["retrieved"] == {"id": first["id"], "email": email, "name": "Node Flow"}
    assert out["updated"] == {
        "id": first["id"],
        "name": "Node Flow 2",
        "metadata": {"suite": "blackbox", "sdk": "node", "step": "updated"},
    }
    created = out["created_ids"]
    assert len(created) == 30 and created[0] == first["id"]
    assert len(out["listed_ids"]) == 30 and set(out["listed_ids"]) == set(created)
    assert out["payment_intent"]["created_status"] == "requires_confirmation"
    assert out["payment_intent"]["confirmed_status"] == "succeeded" and out["payment_intent"]["amount"] == 2000
    assert out["deleted"] == {"id": first["id"], "deleted": True}

    direct = upstream.direct(proxied.secret, "GET", f"/v1/customers/{missing}").json()["error"]
    for case in ("retrieve_deleted", "not_found"):
        err = out[case]
        assert err["class"] == "StripeInvalidRequestError" and err["is_invalid_request"], err
        assert err["status"] == 404 and err["raw_type"] == "invalid_request_error", err
        assert err["message"] == direct["message"], err
    unknown = out["unknown_key"]
    assert unknown["class"] == "StripeAuthenticationError" and unknown["status"] == 401, unknown

    mine = assert_only_the_connection_key_went_upstream(upstream, seq, proxied, bound["key"], proxied.key, proxied.tenant.key)
    pages = [r for r in mine if r["method"] == "GET" and r["path"] == "/v1/customers"]
    assert len(pages) == 5, pages  # 30 customers, 7 a page
    assert all("starting_after" in r["query_keys"] for r in pages[1:])
