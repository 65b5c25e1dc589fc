"""Webhooks (issue 12) through the release binary: Stripe events in, verified,
deduplicated and stored per connection; Patchbay's own events and Stripe's
delivered onward in the Standard Webhooks format, verified here with the PyPI
`standardwebhooks` library (tests/blackbox/requirements.txt pins it).

The contract is /work/notes/webhooks-api.md (the issue's HTTP API). This module
runs its own pair of servers, both on 127.0.0.1, so nothing it configures
reaches the rest of the suite:

  - a localstripe (localstripe_server.py, as scripts/blackbox starts it) whose
    webhook feature (`POST /_config/webhooks/{id}` with `url` and `secret`)
    signs and sends real events for what Patchbay does there. localstripe's
    webhook registrations are global to the process and cannot be removed, so
    each test's registration is narrowed to an event type that never happens
    when the test ends;
  - a second `patchbay serve` of the same binary (PATCHBAY_BIN, else the
    release build), SQLite in a fresh data directory, with that localstripe as
    its Stripe and short delivery retries (`PATCHBAY_WEBHOOK_RETRY_BASE=1s`),
    so a failing subscriber sees its retries within seconds;
  - a subscriber: an HTTP server in this process on 127.0.0.1 (loopback http is
    allowed on SQLite by default), one path per test, answering each request
    from a per-path plan (e.g. 500, 500, then 200) and keeping every request.

Parts, as marked below:
  (A) localstripe -> Patchbay -> subscriber: customers created, updated and
      deleted through typed actions and the raw proxy; the events stored
      (`GET /connections/{id}/events`, type and created filters, keyset pages,
      `GET /events/{id}`) and delivered once each, verifying with
      `standardwebhooks`, with the right headers and body.
  (B) Verification in: a forged post (wrong secret) is a 400 and stores
      nothing; tampered body, old and future timestamps, missing and malformed
      headers; a rolled secret (several `v1` while rolling); unknown endpoint;
      a signed body that is no event; an event type the endpoint does not take.
      The same signed event posted 5 times concurrently: one stored event, one
      delivery.
  (C) Retries: a subscriber answering 500 twice then 200 gets one successful
      delivery, with the same `webhook-id` on every attempt, and the attempt
      log shows the failures; a 429 with `Retry-After` is honoured; manual
      redelivery keeps the `webhook-id`.
  (D) Patchbay's own events: `connection.created`, `connection.status_changed`
      and `connection.deleted` reach a subscriber.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from conftest import (
    FAKE_CONNECT_URL,
    RECORDER,
    Api,
    describe,
    error,
    ok,
    parse_time,
    single_server_only,
    stripe_key,
    unique,
    wait_for,
)

pytestmark = single_server_only(
    "it starts its own single SQLite `patchbay serve` with a localstripe and webhook settings"
    " of its own and never uses the replicas (it ran in the single-server pass)"
)

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).resolve().parent
ALNUM = string.ascii_letters + string.digits

# Settings of the second Patchbay beyond the usual ones (the binary refuses
# PATCHBAY_* names it does not know, so only the contract's are used).
WEBHOOK_SETTINGS = {
    "PATCHBAY_WEBHOOK_RETRY_BASE": "1s",
}


# --------------------------------------------------------------------------
# Processes: localstripe and a second Patchbay
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def patchbay_binary() -> Path:
    if os.environ.get("PATCHBAY_BIN"):
        return Path(os.environ["PATCHBAY_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "patchbay"


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_ready(process: subprocess.Popen, url: str, log: Path, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited ({process.returncode}):\n{log_tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} within {timeout} s:\n{log_tail(log)}")
        time.sleep(0.1)


def stop(process: subprocess.Popen, grace: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9
    return process.returncode


class LocalStripe:
    """localstripe on 127.0.0.1, and its webhook configuration."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def register(self, webhook_id: str, url: str, secret: str, events: list[str] | None = None) -> None:
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        r = self.http.post(f"{self.url}/_config/webhooks/{webhook_id}", json=body, timeout=10)
        assert r.status_code == 200, f"localstripe webhook config -> {r.status_code}: {r.text[:300]}"

    def silence(self, webhook_id: str) -> None:
        """localstripe cannot forget a webhook: narrow it to a type it never sends."""
        self.register(webhook_id, "http://127.0.0.1:9/", "whsec_silenced", ["patchbay.test.never"])


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    work = tmp_path_factory.mktemp("wh-localstripe")
    port = free_port()
    log = work / "localstripe.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(SUITE / "localstripe_server.py"), "--port", str(port), "--access-log"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # The wrapper's own route: /v1/balance would create the balance (and its event).
        wait_ready(process, f"http://127.0.0.1:{port}/_blackbox/requests", log, "localstripe", 20)
        yield LocalStripe(f"http://127.0.0.1:{port}")
    finally:
        stop(process, 5)


@dataclass
class Server:
    url: str
    admin: Api
    process: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return log_tail(self.log)


@pytest.fixture(scope="module")
def server(localstripe: LocalStripe, tmp_path_factory):
    binary = patchbay_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"no Patchbay binary at {binary}: set PATCHBAY_BIN or build with cargo build --release -p patchbay")
    work = tmp_path_factory.mktemp("wh-patchbay")
    (work / "data").mkdir()
    port = free_port()
    admin_token = "adm_" + secrets.token_urlsafe(36)
    RECORDER.add_secret(admin_token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        PATCHBAY_LISTEN=f"127.0.0.1:{port}",
        PATCHBAY_DATA_DIR=str(work / "data"),
        PATCHBAY_STRIPE_API_BASE=localstripe.url,
        PATCHBAY_ADMIN_TOKEN=admin_token,
        PATCHBAY_STRIPE_MAX_RETRIES="1",
        PATCHBAY_JOB_POLL="100ms",
        PATCHBAY_JOB_BACKOFF="500ms",
        PATCHBAY_LOG="info",
        **WEBHOOK_SETTINGS,
    )
    if FAKE_CONNECT_URL:
        env["PATCHBAY_STRIPE_CONNECT_BASE"] = FAKE_CONNECT_URL
    log = work / "patchbay.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(binary), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(url=f"http://127.0.0.1:{port}", admin=Api(admin_token), process=process, log=log)
    try:
        wait_ready(process, f"{srv.url}/readyz", log, "the webhook test Patchbay")
        yield srv
    finally:
        rc = stop(process)
        tail = srv.log_tail()
    assert rc == 0, f"the webhook test Patchbay exited {rc} on SIGTERM:\n{tail}"
    assert "panicked" not in log.read_text(errors="replace"), f"panic in the log:\n{tail}"


# --------------------------------------------------------------------------
# The subscriber: one HTTP server, a path per test, answers from a plan
# --------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() on arrival
    status: int  # what the subscriber answered


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay: float = 0.0


class Subscriber:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.plans: dict[str, list[Answer]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self) -> None:
                body = self._body()
                with outer.lock:
                    plan = outer.plans.get(self.path)
                    answer = plan.pop(0) if plan else Answer()
                    outer.hits.append(
                        Hit(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.time(),
                            status=answer.status,
                        )
                    )
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_POST = _answer
            do_PUT = _answer
            do_GET = _answer

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def path(self, name: str | None = None) -> str:
        return f"/hook/{name or unique('sub')}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *answers: Answer) -> None:
        with self.lock:
            self.plans[path] = list(answers)

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture(scope="module")
def subscriber():
    s = Subscriber()
    yield s
    s.close()


# --------------------------------------------------------------------------
# Stripe's signature, and events made by hand
# --------------------------------------------------------------------------


def whsec() -> str:
    """A Stripe-style endpoint signing secret; Patchbay must never show it back."""
    value = "whsec_" + "".join(secrets.choice(ALNUM) for _ in range(32))
    RECORDER.add_secret(value)
    return value


def stripe_signature(body: bytes, *secrets_: str, t: int | None = None) -> str:
    """`Stripe-Signature: t=…,v1=…[,v1=…]` as Stripe computes it: hex HMAC-SHA256,
    key = the whole `whsec_…` string, message = `{t}.{raw body}`."""
    t = int(time.time()) if t is None else t
    parts = [f"t={t}"]
    for s in secrets_:
        parts.append("v1=" + hmac.new(s.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest())
    return ",".join(parts)


def stripe_event(type_: str = "invoice.paid", obj: dict | None = None, **fields: Any) -> dict:
    event = {
        "id": "evt_" + "".join(secrets.choice(ALNUM) for _ in range(24)),
        "object": "event",
        "api_version": "2026-05-27.dahlia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {"object": obj or {"id": "in_" + secrets.token_hex(8), "object": "invoice", "amount_paid": 4200}},
    }
    event.update(fields)
    return event


def body_of(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


# --------------------------------------------------------------------------
# A tenant of the second server, with a connection, an endpoint, a subscription
# --------------------------------------------------------------------------


def page_of(body: Any) -> list[dict]:
    """A list answer's items (`{"object":"list","data":[…]}`)."""
    assert isinstance(body, dict) and body.get("object") == "list" and isinstance(body.get("data"), list), body
    return body["data"]


@dataclass
class Hooks:
    server: Server
    tenant_id: str
    api: Api  # admin-scoped tenant key
    proxy: Api  # `proxy`-scoped tenant key (typed actions, the raw proxy)
    subscriber: Subscriber
    localstripe: LocalStripe
    registered: list[str] = field(default_factory=list)

    def u(self, path: str) -> str:
        return self.server.url + path

    def connect(self, **fields: Any) -> dict:
        body = {"provider": "stripe", "api_key": stripe_key(), **fields}
        conn = ok(self.api.post(self.u("/api/v1/connections"), json=body), 201)
        assert conn["status"] == "active", conn
        return conn

    def endpoint(self, connection_id: str, secret: str, **fields: Any) -> dict:
        body = {"signing_secret": secret, **fields}
        return ok(self.api.post(self.u(f"/api/v1/connections/{connection_id}/webhook-endpoints"), json=body), 201)

    def subscribe(self, path: str, events: list[str], **fields: Any) -> dict:
        body = {"url": self.subscriber.url(path), "events": events, **fields}
        return ok(self.api.post(self.u("/api/v1/event-subscriptions"), json=body), 201)

    def post_event(self, endpoint: dict, body: bytes, signature: str | None, **headers: str) -> requests.Response:
        """Stripe's POST to the endpoint's public URL (no tenant key)."""
        h = {"Content-Type": "application/json; charset=utf-8", **headers}
        if signature is not None:
            h["Stripe-Signature"] = signature
        return Api().post(endpoint["url"], data=body, headers=h)

    def action(self, connection_id: str, action: str, config: dict) -> dict:
        r = self.proxy.post(
            self.u(f"/api/v1/connections/{connection_id}/actions"), json={"action": action, "config": config}
        )
        return ok(r)

    def events(self, of: str | None = None, **params: Any) -> list[dict]:
        """Every event (all pages) of connection `of` (or of the tenant), newest first."""
        route = f"/api/v1/connections/{of}/events" if of else "/api/v1/events"
        out: list[dict] = []
        after = None
        while True:
            q = {"limit": 100, **params}
            if after:
                q["starting_after"] = after
            body = ok(self.api.get(self.u(route), params=q))
            out += page_of(body)
            if not body["has_more"]:
                return out
            after = out[-1]["id"]

    def event(self, event_id: str) -> dict:
        return ok(self.api.get(self.u(f"/api/v1/events/{event_id}")))

    def with_data(self, events: list[dict]) -> list[dict]:
        """The events with `data` (fetched one by one if a list leaves it out)."""
        return [e if "data" in e else self.event(e["id"]) for e in events]

    def deliveries(self, event_id: str) -> list[dict]:
        body = ok(self.api.get(self.u(f"/api/v1/events/{event_id}/deliveries")))
        return body if isinstance(body, list) else page_of(body)

    def register_localstripe(self, url: str, secret: str) -> str:
        webhook_id = unique("we")
        self.localstripe.register(webhook_id, url, secret)
        self.registered.append(webhook_id)
        return webhook_id


@pytest.fixture
def hooks(server: Server, subscriber: Subscriber, localstripe: LocalStripe):
    t = ok(server.admin.post(f"{server.url}/api/v1/tenants", json={"name": unique("webhooks")}), 201)
    k = ok(server.admin.post(f"{server.url}/api/v1/tenants/{t['id']}/api-keys", json={"scopes": ["admin"]}), 201)
    p = ok(server.admin.post(f"{server.url}/api/v1/tenants/{t['id']}/api-keys", json={"scopes": ["proxy"]}), 201)
    h = Hooks(
        server=server,
        tenant_id=t["id"],
        api=Api(k["key"]),
        proxy=Api(p["key"]),
        subscriber=subscriber,
        localstripe=localstripe,
    )
    yield h
    for webhook_id in h.registered:
        localstripe.silence(webhook_id)
    r = server.admin.delete(f"{server.url}/api/v1/tenants/{t['id']}")
    assert r.status_code in (200, 404), describe(r)


def verify(secret: str, hit: Hit) -> dict:
    """The delivery as a tenant checks it: standardwebhooks, nothing of our own."""
    try:
        return Webhook(secret).verify(hit.body, hit.headers)
    except WebhookVerificationError as e:  # pragma: no cover - the failure is the message
        raise AssertionError(f"delivery to {hit.path} does not verify: {e}; headers {hit.headers}") from None


def settle(seconds: float = 2.0) -> None:
    """Time for anything that should not happen (a second delivery) to show up."""
    time.sleep(seconds)


# ==========================================================================
# (A) localstripe signs real events for actions done through Patchbay
# ==========================================================================


def test_a_localstripe_events_stored_and_delivered(hooks: Hooks) -> None:
    conn = hooks.connect(name="webhooks A")
    secret = whsec()
    before = int(time.time())
    endpoint = hooks.endpoint(conn["id"], secret, description="localstripe")

    # The endpoint object.
    assert endpoint["id"].startswith("we_") and len(endpoint["id"]) == 3 + 26, endpoint
    assert endpoint["object"] == "webhook_endpoint"
    assert endpoint["scope"] == "connection"
    assert endpoint["connection_id"] == conn["id"]
    assert endpoint["livemode"] is False
    assert endpoint["events"] == ["*"]
    assert endpoint["description"] == "localstripe"
    assert endpoint["url"] == f"{hooks.server.url}/api/v1/webhooks/stripe/{endpoint['id']}", endpoint
    assert endpoint["secret_hint"].startswith("whsec_") and endpoint["secret_hint"].endswith(secret[-4:])
    assert endpoint["previous_secret_expires_at"] is None
    # Times of Patchbay's own records are RFC 3339 `*_at`, as on connections.
    assert before - 5 <= parse_time(endpoint["created_at"]).timestamp() <= time.time() + 5
    assert endpoint["updated_at"] == endpoint["created_at"]
    assert "signing_secret" not in endpoint and "secret" not in endpoint
    assert ok(hooks.api.get(hooks.u(f"/api/v1/webhook-endpoints/{endpoint['id']}"))) == endpoint
    listed = page_of(ok(hooks.api.get(hooks.u(f"/api/v1/connections/{conn['id']}/webhook-endpoints"))))
    assert [e["id"] for e in listed] == [endpoint["id"]]
    listed = page_of(ok(hooks.api.get(hooks.u("/api/v1/webhook-endpoints"), params={"connection_id": conn["id"]})))
    assert [e["id"] for e in listed] == [endpoint["id"]]

    customer_types = ["customer.created", "customer.updated", "customer.deleted"]
    path = hooks.subscriber.path("a")
    sub = hooks.subscribe(path, customer_types, connection_id=conn["id"], description="CRM sync")
    assert sub["id"].startswith("esub_") and sub["object"] == "event_subscription", sub
    assert sub["status"] == "enabled" and sub["disabled_reason"] is None
    assert sub["connection_id"] == conn["id"] and sub["events"] == customer_types
    assert sub["secret"].startswith("whsec_") and sub["secret_hint"].endswith(sub["secret"][-4:])
    got = ok(hooks.api.get(hooks.u(f"/api/v1/event-subscriptions/{sub['id']}")))
    assert "secret" not in got and got["secret_hint"] == sub["secret_hint"]

    # localstripe now signs every event it makes with `secret` and posts it to the endpoint.
    hooks.register_localstripe(endpoint["url"], secret)

    # Typed actions, and the raw proxy, as a workflow would call them.
    created = [
        hooks.action(conn["id"], "stripe.createCustomer", {"email": f"{unique('a')}@example.com", "name": f"A {i}"})
        for i in range(3)
    ]
    r = hooks.proxy.post(
        hooks.u(f"/api/v1/connections/{conn['id']}/proxy/v1/customers"),
        data={"email": f"{unique('proxy')}@example.com"},
    )
    assert r.status_code == 200, describe(r)
    created.append(r.json())
    ids = [c["id"] for c in created]
    hooks.action(conn["id"], "stripe.updateCustomer", {"customerId": ids[0], "name": "A renamed"})
    hooks.action(conn["id"], "stripe.deleteCustomer", {"customerId": ids[1]})

    def ours(events: list[dict]) -> list[dict]:
        return [e for e in events if e["data"]["data"]["object"].get("id") in ids]

    expected = {("customer.created", i) for i in ids} | {("customer.updated", ids[0]), ("customer.deleted", ids[1])}

    def stored() -> list[dict] | None:
        events = ours(hooks.with_data([e for e in hooks.events(conn["id"]) if e["type"].startswith("customer.")]))
        return events if len(events) >= len(expected) else None

    events = wait_for(stored, 30, 0.5, "localstripe's six customer events to be stored")
    assert {(e["type"], e["data"]["data"]["object"]["id"]) for e in events} == expected
    assert len(events) == len(expected), [(e["type"], e["stripe_event_id"]) for e in events]
    for e in events:
        assert e["id"].startswith("ev_") and len(e["id"]) == 3 + 26, e
        assert e["object"] == "event"
        assert e["source"] == "stripe"
        assert e["endpoint_id"] == endpoint["id"]
        assert e["connection_id"] == conn["id"]
        assert e["livemode"] is False
        assert e["stripe_event_id"].startswith("evt_")
        # Stripe's event verbatim.
        assert e["data"]["id"] == e["stripe_event_id"] and e["data"]["type"] == e["type"]
        assert e["data"]["object"] == "event"
        assert e["created"] == e["data"]["created"]
        assert parse_time(e["received_at"]).timestamp() >= e["created"] - 1
    # Newest first (by the event's own `created`); Patchbay's connection.created is listed too.
    assert [e["type"] for e in hooks.events(conn["id"], type="connection.created")] == ["connection.created"]
    listed = [e["created"] for e in hooks.events(conn["id"])]
    assert listed == sorted(listed, reverse=True)

    # GET /events/{id}, and the tenant-wide list.
    for one in events:
        assert hooks.event(one["id"]) == one
    everywhere = {e["id"] for e in hooks.events(None, connection_id=conn["id"])}
    assert {e["id"] for e in events} <= everywhere

    # Type filter.
    updated = hooks.with_data(hooks.events(conn["id"], type="customer.updated"))
    assert [e["data"]["data"]["object"]["id"] for e in updated] == [ids[0]]
    assert all(e["type"] == "customer.created" for e in hooks.events(conn["id"], type="customer.created"))
    assert len(ours(hooks.with_data(hooks.events(conn["id"], type="customer.created")))) == 4

    # Created range (the event's own `created`).
    first = min(e["created"] for e in events)
    assert hooks.events(conn["id"], created_gte=int(time.time()) + 3600) == []
    assert hooks.events(conn["id"], created_lte=first - 3600) == []
    in_range = hooks.events(conn["id"], created_gte=first, created_lte=int(time.time()) + 5)
    assert {e["id"] for e in events} <= {e["id"] for e in in_range}

    # Keyset pages of 2: forward, then back from the last page.
    route = hooks.u(f"/api/v1/connections/{conn['id']}/events")
    everything = [e["id"] for e in hooks.events(conn["id"])]
    pages: list[list[str]] = []
    after = None
    while True:
        q: dict[str, Any] = {"limit": 2}
        if after:
            q["starting_after"] = after
        body = ok(hooks.api.get(route, params=q))
        page = [e["id"] for e in page_of(body)]
        assert 0 < len(page) <= 2
        pages.append(page)
        if not body["has_more"]:
            break
        after = page[-1]
    assert [i for p in pages for i in p] == everything
    if len(pages) > 1:
        body = ok(hooks.api.get(route, params={"limit": 2, "ending_before": pages[-1][0]}))
        assert [e["id"] for e in page_of(body)] == pages[-2]

    # Delivered onward: one request per event, verifying with standardwebhooks.
    def delivered() -> list[Hit] | None:
        hits = hooks.subscriber.at(path)
        return hits if len({h.headers.get("webhook-id") for h in hits}) >= len(events) else None

    wait_for(delivered, 30, 0.25, "six deliveries")
    settle()
    hits = hooks.subscriber.at(path)
    by_id = {e["id"]: e for e in events}
    assert sorted(h.headers["webhook-id"] for h in hits) == sorted(by_id), "one delivery per event, nothing else"
    for hit in hits:
        payload = verify(sub["secret"], hit)
        event = by_id[hit.headers["webhook-id"]]
        assert hit.headers["content-type"].startswith("application/json")
        assert hit.headers["user-agent"].startswith("Patchbay-Webhooks/")
        assert abs(int(hit.headers["webhook-timestamp"]) - hit.at) <= 5
        assert payload["id"] == event["id"]
        assert payload["type"] == event["type"]
        assert payload["created"] == event["created"]
        assert payload["source"] == "stripe"
        assert payload["connection_id"] == conn["id"]
        assert payload["endpoint_id"] == endpoint["id"]
        assert payload["livemode"] is False
        assert payload["data"] == event["data"]
        assert payload["timestamp"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event["created"])))
        # A wrong secret does not verify (the library is really checking).
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(hit.body, hit.headers)

    # The delivery records.
    for e in events:
        [d] = hooks.deliveries(e["id"])
        assert d["id"].startswith("dlv_") and d["object"] == "event_delivery", d
        assert d["event_id"] == e["id"] and d["subscription_id"] == sub["id"]
        assert d["status"] == "succeeded" and d["attempts"] == 1 and d["last_status_code"] == 200, d
        [attempt] = d["attempt_log"]
        assert attempt["status_code"] == 200 and attempt["error"] is None, attempt
        assert attempt["response_snippet"] == '{"ok":true}'


def test_a_subscription_filters_by_type_and_connection(hooks: Hooks) -> None:
    """Only the subscribed types, of the subscribed connection, are delivered."""
    conn = hooks.connect(name="filters")
    other = hooks.connect(name="filters other")
    secret = whsec()
    endpoint = hooks.endpoint(conn["id"], secret)
    other_secret = whsec()
    other_endpoint = hooks.endpoint(other["id"], other_secret)
    path_created = hooks.subscriber.path("created-only")
    path_other = hooks.subscriber.path("other-connection")
    path_all = hooks.subscriber.path("all")
    only_created = hooks.subscribe(path_created, ["customer.created"], connection_id=conn["id"])
    hooks.subscribe(path_other, ["*"], connection_id=other["id"])
    every = hooks.subscribe(path_all, ["*"])

    # Signed by hand this time: an update and a creation on `conn`, one creation on `other`.
    sent = []
    for ep, sec, type_ in ((endpoint, secret, "customer.updated"), (endpoint, secret, "customer.created"), (other_endpoint, other_secret, "customer.created")):
        ev = stripe_event(type_, {"id": "cus_" + secrets.token_hex(7), "object": "customer"})
        body = body_of(ev)
        got = ok(hooks.post_event(ep, body, stripe_signature(body, sec)))
        assert got["received"] is True and got["duplicate"] is False, got
        sent.append((ep["id"], type_, got["event_id"]))

    wait_for(lambda: len(hooks.subscriber.at(path_all)) >= 3, 20, 0.25, "three deliveries to the * subscription")
    wait_for(lambda: hooks.subscriber.at(path_created) and hooks.subscriber.at(path_other), 20, 0.25, "the filtered ones")
    settle()
    assert [h.headers["webhook-id"] for h in hooks.subscriber.at(path_created)] == [sent[1][2]]
    assert [h.headers["webhook-id"] for h in hooks.subscriber.at(path_other)] == [sent[2][2]]
    assert sorted(h.headers["webhook-id"] for h in hooks.subscriber.at(path_all)) == sorted(s[2] for s in sent)
    for h in hooks.subscriber.at(path_all):
        verify(every["secret"], h)
    verify(only_created["secret"], hooks.subscriber.at(path_created)[0])
    # Each connection lists only its own.
    assert {e["id"] for e in stripe_events(hooks, conn["id"])} == {sent[0][2], sent[1][2]}
    assert {e["id"] for e in stripe_events(hooks, other["id"])} == {sent[2][2]}


# ==========================================================================
# (B) Verification in, and deduplication
# ==========================================================================


@pytest.fixture
def signed(hooks: Hooks):
    """A connection with an endpoint whose secret we hold."""
    conn = hooks.connect(name="signatures")
    secret = whsec()
    endpoint = hooks.endpoint(conn["id"], secret)
    return conn, endpoint, secret


def stripe_events(hooks: Hooks, connection_id: str, **params: Any) -> list[dict]:
    """A connection's events from Stripe (its list has Patchbay's own too: connection.created)."""
    return [e for e in hooks.events(connection_id, **params) if e["source"] == "stripe"]


def stored_ids(hooks: Hooks, connection_id: str) -> set[str]:
    return {e["stripe_event_id"] for e in stripe_events(hooks, connection_id)}


def test_b_forged_post_is_refused_and_stores_nothing(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    path = hooks.subscriber.path("forged")
    hooks.subscribe(path, ["*"], connection_id=conn["id"])
    ev = stripe_event()
    body = body_of(ev)

    err = error(hooks.post_event(endpoint, body, stripe_signature(body, whsec())), 400, "webhook_signature_invalid")
    assert err["type"] == "invalid_request_error"
    settle(1.5)
    assert ev["id"] not in stored_ids(hooks, conn["id"])
    assert stripe_events(hooks, conn["id"]) == []
    assert hooks.subscriber.at(path) == []

    # The genuine one is accepted afterwards (the forgery did not burn the id).
    got = ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))
    assert got["received"] is True and got["duplicate"] is False and got["event_id"].startswith("ev_"), got
    assert stored_ids(hooks, conn["id"]) == {ev["id"]}


def test_b_signature_cases(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    ev = stripe_event()
    body = body_of(ev)
    now = int(time.time())
    bad = {
        "tampered body": (body.replace(b"4200", b"4201"), stripe_signature(body, secret)),
        "timestamp 301 s old": (body, stripe_signature(body, secret, t=now - 301)),
        "timestamp 301 s ahead": (body, stripe_signature(body, secret, t=now + 301)),
        "missing header": (body, None),
        "malformed header": (body, "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()),
        "not hex": (body, f"t={now},v1=zz"),
        "only v0": (body, stripe_signature(body, secret).replace("v1=", "v0=")),
        "empty header": (body, ""),
    }
    for what, (b, sig) in bad.items():
        r = hooks.post_event(endpoint, b, sig)
        assert r.status_code == 400, f"{what}: {describe(r)}"
        error(r, 400, "webhook_signature_invalid")
    assert stripe_events(hooks, conn["id"]) == []

    # Within the tolerance either way, and with a scheme Stripe may add (v0) alongside.
    ok(hooks.post_event(endpoint, body, stripe_signature(body, secret, t=now - 250)))
    ev2 = stripe_event()
    body2 = body_of(ev2)
    ok(hooks.post_event(endpoint, body2, stripe_signature(body2, secret, t=now + 250) + ",v0=abc"))
    assert stored_ids(hooks, conn["id"]) == {ev["id"], ev2["id"]}

    # Unknown endpoint: 404. Signed, but not an event: 400 webhook_payload_invalid.
    unknown = dict(endpoint, url=endpoint["url"].rsplit("/", 1)[0] + "/we_" + "0" * 26)
    error(hooks.post_event(unknown, body, stripe_signature(body, secret)), 404, "resource_missing")
    for junk in (b"not json", b"[]", b'{"object":"event"}', b'{"id":"evt_1"}'):
        error(hooks.post_event(endpoint, junk, stripe_signature(junk, secret)), 400, "webhook_payload_invalid")
    assert stored_ids(hooks, conn["id"]) == {ev["id"], ev2["id"]}


def test_b_body_limit(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    ev = stripe_event(obj={"id": "in_big", "object": "invoice", "blob": "x" * (1024 * 1024 + 1)})
    body = body_of(ev)
    try:
        r = hooks.post_event(endpoint, body, stripe_signature(body, secret))
    except requests.ConnectionError:
        r = None  # answered 413 and closed before the whole body was sent: also a refusal
    if r is not None:
        error(r, 413)
    assert stripe_events(hooks, conn["id"]) == []


def test_b_event_types_of_the_endpoint(hooks: Hooks) -> None:
    conn = hooks.connect(name="types")
    secret = whsec()
    endpoint = hooks.endpoint(conn["id"], secret, events=["invoice.paid"])
    assert endpoint["events"] == ["invoice.paid"]
    other = stripe_event("customer.created", {"id": "cus_x", "object": "customer"})
    body = body_of(other)
    assert ok(hooks.post_event(endpoint, body, stripe_signature(body, secret))) == {"received": True, "ignored": True}
    assert stripe_events(hooks, conn["id"]) == []
    paid = stripe_event("invoice.paid")
    body = body_of(paid)
    assert ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["duplicate"] is False
    assert stored_ids(hooks, conn["id"]) == {paid["id"]}
    # PATCH the types; then the other type is taken.
    patched = ok(hooks.api.patch(hooks.u(f"/api/v1/webhook-endpoints/{endpoint['id']}"), json={"events": ["*"]}))
    assert patched["events"] == ["*"]
    body = body_of(other)
    assert ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["duplicate"] is False
    assert stored_ids(hooks, conn["id"]) == {paid["id"], other["id"]}


def test_b_rolled_secret(hooks: Hooks, signed) -> None:
    conn, endpoint, old = signed
    new = whsec()
    rolled = ok(
        hooks.api.post(
            hooks.u(f"/api/v1/webhook-endpoints/{endpoint['id']}/roll-secret"),
            json={"signing_secret": new, "expire_previous_in_seconds": 600},
        )
    )
    assert rolled["secret_hint"].endswith(new[-4:]), rolled
    assert rolled["previous_secret_expires_at"], rolled
    assert parse_time(rolled["previous_secret_expires_at"]).timestamp() > time.time() + 500
    accepted = []
    for what, sigs in (("old only", [old]), ("new only", [new]), ("both, as Stripe sends while rolling", [old, new]), ("stranger and new", [whsec(), new])):
        ev = stripe_event()
        body = body_of(ev)
        r = hooks.post_event(endpoint, body, stripe_signature(body, *sigs))
        assert r.status_code == 200, f"{what}: {describe(r)}"
        accepted.append(ev["id"])
    # The old secret ends at once when rolled again with 0.
    newer = whsec()
    ok(
        hooks.api.post(
            hooks.u(f"/api/v1/webhook-endpoints/{endpoint['id']}/roll-secret"),
            json={"signing_secret": newer, "expire_previous_in_seconds": 0},
        )
    )
    ev = stripe_event()
    body = body_of(ev)
    error(hooks.post_event(endpoint, body, stripe_signature(body, old)), 400, "webhook_signature_invalid")
    ok(hooks.post_event(endpoint, body, stripe_signature(body, newer)))
    accepted.append(ev["id"])
    assert stored_ids(hooks, conn["id"]) == set(accepted)
    # A secret that is not whsec_…: 422.
    error(
        hooks.api.post(hooks.u(f"/api/v1/connections/{conn['id']}/webhook-endpoints"), json={"signing_secret": "sk_test_nope_nope_nope"}),
        422,
        "invalid_signing_secret",
        "signing_secret",
    )


def test_b_same_event_five_times_concurrently(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    path = hooks.subscriber.path("dedup")
    sub = hooks.subscribe(path, ["*"], connection_id=conn["id"])
    ev = stripe_event("invoice.paid")
    body = body_of(ev)
    signature = stripe_signature(body, secret)
    gate = threading.Barrier(5)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def post() -> None:
        api = Api()
        gate.wait()
        r = api.post(endpoint["url"], data=body, headers={"Content-Type": "application/json", "Stripe-Signature": signature})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 5
    for r in answers:
        assert r.status_code == 200, describe(r)
    bodies = [r.json() for r in answers]
    assert len({b["event_id"] for b in bodies}) == 1, bodies
    assert sorted(b["duplicate"] for b in bodies) == [False, True, True, True, True], bodies
    event_id = bodies[0]["event_id"]

    # A sixth, later: still the first event's id.
    assert ok(hooks.post_event(endpoint, body, stripe_signature(body, secret))) == {
        "received": True,
        "event_id": event_id,
        "duplicate": True,
    }

    stored = stripe_events(hooks, conn["id"])
    assert [(e["id"], e["stripe_event_id"]) for e in stored] == [(event_id, ev["id"])]
    wait_for(lambda: hooks.subscriber.at(path), 20, 0.25, "the delivery")
    settle(3)
    hits = hooks.subscriber.at(path)
    assert [h.headers["webhook-id"] for h in hits] == [event_id], "one delivery"
    assert verify(sub["secret"], hits[0])["data"] == ev
    [d] = hooks.deliveries(event_id)
    assert d["status"] == "succeeded" and d["attempts"] == 1


# ==========================================================================
# (C) Retries, Retry-After, redelivery
# ==========================================================================


def test_c_retries_until_the_subscriber_succeeds(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    path = hooks.subscriber.path("flaky")
    hooks.subscriber.plan(
        path,
        Answer(500, body=b'{"error":"database down"}'),
        Answer(500, body=b'{"error":"still down"}'),
        Answer(200),
    )
    sub = hooks.subscribe(path, ["invoice.paid"], connection_id=conn["id"])
    ev = stripe_event("invoice.paid")
    body = body_of(ev)
    event_id = ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["event_id"]

    # PATCHBAY_WEBHOOK_RETRY_BASE=1s: two retries after about 1 s and 2 s (with jitter).
    wait_for(lambda: len(hooks.subscriber.at(path)) >= 3, 60, 0.25, "three attempts")
    settle(4)
    hits = hooks.subscriber.at(path)
    assert [h.status for h in hits] == [500, 500, 200], "exactly one successful delivery, after two failures"
    assert {h.headers["webhook-id"] for h in hits} == {event_id}, "the same webhook-id on every attempt"
    for h in hits:
        payload = verify(sub["secret"], h)  # each attempt signed afresh, each verifies
        assert payload["id"] == event_id and payload["data"] == ev
    assert hits[0].at < hits[1].at < hits[2].at

    def succeeded() -> dict | None:
        [d] = hooks.deliveries(event_id)
        return d if d["status"] == "succeeded" else None

    d = wait_for(succeeded, 10, 0.25, "the delivery to be recorded as succeeded")
    assert d["attempts"] == 3 and d["last_status_code"] == 200, d
    assert d["next_attempt_at"] is None, d
    log = d["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 200], log
    assert "database down" in log[0]["response_snippet"] and "still down" in log[1]["response_snippet"], log
    assert all(isinstance(a["duration_ms"], int) and a["duration_ms"] >= 0 for a in log), log
    assert [a["attempt"] for a in log] == [1, 2, 3], log
    assert all(parse_time(a["attempted_at"]) <= parse_time(b["attempted_at"]) for a, b in zip(log, log[1:])), log


def test_c_retry_after_is_honoured(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    path = hooks.subscriber.path("busy")
    hooks.subscriber.plan(path, Answer(429, headers={"Retry-After": "4"}, body=b'{"error":"slow down"}'), Answer(200))
    hooks.subscribe(path, ["*"], connection_id=conn["id"])
    ev = stripe_event()
    body = body_of(ev)
    event_id = ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["event_id"]
    wait_for(lambda: len(hooks.subscriber.at(path)) >= 2, 30, 0.25, "the retry after Retry-After")
    first, second = hooks.subscriber.at(path)[:2]
    assert second.at - first.at >= 3.5, f"retried after {second.at - first.at:.2f} s despite Retry-After: 4"
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    settle()
    assert len(hooks.subscriber.at(path)) == 2


def test_c_redeliver_keeps_the_webhook_id(hooks: Hooks, signed) -> None:
    conn, endpoint, secret = signed
    path = hooks.subscriber.path("redeliver")
    sub = hooks.subscribe(path, ["*"], connection_id=conn["id"])
    ev = stripe_event()
    body = body_of(ev)
    event_id = ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["event_id"]
    wait_for(lambda: hooks.subscriber.at(path), 20, 0.25, "the first delivery")
    out = ok(hooks.api.post(hooks.u(f"/api/v1/events/{event_id}/redeliver"), json={"subscription_id": sub["id"]}), 202)
    [d] = page_of(out)
    assert d["event_id"] == event_id and d["subscription_id"] == sub["id"], d
    wait_for(lambda: len(hooks.subscriber.at(path)) >= 2, 20, 0.25, "the redelivery")
    hits = hooks.subscriber.at(path)
    assert [h.headers["webhook-id"] for h in hits] == [event_id, event_id]
    assert verify(sub["secret"], hits[1])["data"] == ev
    wait_for(lambda: len(hooks.deliveries(event_id)) == 2 and all(x["status"] == "succeeded" for x in hooks.deliveries(event_id)), 10, 0.25, "two succeeded deliveries")


# ==========================================================================
# (D) Patchbay's own events
# ==========================================================================


def test_d_connection_lifecycle_events(hooks: Hooks) -> None:
    path = hooks.subscriber.path("lifecycle")
    types = ["connection.created", "connection.status_changed", "connection.deleted"]
    sub = hooks.subscribe(path, types)
    key = stripe_key()
    conn = ok(hooks.api.post(hooks.u("/api/v1/connections"), json={"provider": "stripe", "api_key": key, "name": "lifecycle"}), 201)

    def of_type(t: str) -> list[dict]:
        out = []
        for h in hooks.subscriber.at(path):
            payload = verify(sub["secret"], h)
            if payload["type"] == t:
                out.append(payload)
        return out

    # Patchbay's events are shaped like Stripe's: `data` is an event object
    # whose `data.object` is the connection (as GET /connections/{id} shows it, less secrets).
    [created] = wait_for(lambda: of_type("connection.created"), 20, 0.25, "connection.created")
    assert created["source"] == "patchbay"
    assert created["connection_id"] == conn["id"]
    assert created["endpoint_id"] is None
    assert created["data"]["id"] == created["id"] and created["data"]["type"] == "connection.created", created
    assert created["data"]["object"] == "event" and created["data"]["created"] == created["created"]
    obj = created["data"]["data"]["object"]
    assert obj["object"] == "connection" and obj["id"] == conn["id"] and obj["status"] == "active", created
    assert "api_key" not in obj and "key_hint" not in obj
    stored = ok(hooks.api.get(hooks.u(f"/api/v1/events/{created['id']}")))
    assert stored["source"] == "patchbay" and stored["stripe_event_id"] is None and stored["type"] == "connection.created"
    assert stored["data"] == created["data"]

    # Stripe starts refusing the key (rolled in the dashboard): validation marks it invalid.
    r = requests.post(
        f"{hooks.localstripe.url}/_blackbox/refuse_key",
        json={"key": key, "paths": ["/v1/account", "/v1/balance", "/v1/customers"]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    validated = ok(hooks.api.post(hooks.u(f"/api/v1/connections/{conn['id']}/validate")))
    assert validated["status"] == "invalid", validated
    [changed] = wait_for(lambda: of_type("connection.status_changed"), 20, 0.25, "connection.status_changed")
    change = changed["data"]["data"]
    assert change["previous_status"] == "active" and change["status"] == "invalid", changed
    assert change["reason"] == validated["last_error"]["code"], changed
    assert change["object"]["id"] == conn["id"] and change["object"]["status"] == "invalid"
    assert changed["connection_id"] == conn["id"]

    ok(hooks.api.delete(hooks.u(f"/api/v1/connections/{conn['id']}")))
    [deleted] = wait_for(lambda: of_type("connection.deleted"), 20, 0.25, "connection.deleted")
    assert deleted["source"] == "patchbay"
    assert deleted["data"]["data"]["object"]["id"] == conn["id"], deleted
    settle()
    hits = hooks.subscriber.at(path)
    assert all(key.encode() not in h.body and key[8:].encode() not in h.body for h in hits), "the Stripe key in a delivery"
    assert len(hits) == len({h.headers["webhook-id"] for h in hits}) == 3, [verify(sub["secret"], h)["type"] for h in hits]
    # Delivered in the order they happened here (not promised in general).
    assert [verify(sub["secret"], h)["type"] for h in hits] == types


def test_d_connection_deleted_names_its_connection(hooks: Hooks) -> None:
    path = hooks.subscriber.path("deleted")
    sub = hooks.subscribe(path, ["connection.deleted"])
    conn = hooks.connect(name="to delete")
    ok(hooks.api.delete(hooks.u(f"/api/v1/connections/{conn['id']}")))
    [hit] = wait_for(lambda: hooks.subscriber.at(path), 20, 0.25, "connection.deleted")
    assert verify(sub["secret"], hit)["connection_id"] == conn["id"]


def test_d_subscription_validation(hooks: Hooks) -> None:
    url = hooks.u("/api/v1/event-subscriptions")
    error(hooks.api.post(url, json={"url": "http://example.com/hook", "events": ["*"]}), 422, "url_not_allowed", "url")
    error(hooks.api.post(url, json={"url": "https://169.254.169.254/latest", "events": ["*"]}), 422, "url_not_allowed", "url")
    error(hooks.api.post(url, json={"url": "https://10.1.2.3/hook", "events": ["*"]}), 422, "url_not_allowed", "url")
    r = hooks.api.post(url, json={"url": hooks.subscriber.url("/hook/x"), "events": []})
    assert r.status_code in (400, 422), describe(r)
    # Read-only keys cannot create; the listed subscription never shows its secret.
    created, reader = _reader(hooks)
    r = reader.post(url, json={"url": hooks.subscriber.url("/hook/x"), "events": ["*"]})
    error(r, 403, "insufficient_scope")
    sub = hooks.subscribe(hooks.subscriber.path("listed"), ["*"])
    listed = page_of(ok(reader.get(url)))
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    disabled = ok(hooks.api.patch(hooks.u(f"/api/v1/event-subscriptions/{sub['id']}"), json={"enabled": False}))
    assert disabled["status"] == "disabled"
    enabled = ok(hooks.api.patch(hooks.u(f"/api/v1/event-subscriptions/{sub['id']}"), json={"enabled": True}))
    assert enabled["status"] == "enabled" and enabled["disabled_reason"] is None
    gone = ok(hooks.api.delete(hooks.u(f"/api/v1/event-subscriptions/{sub['id']}")))
    assert gone["id"] == sub["id"] and gone["deleted"] is True
    error(hooks.api.get(hooks.u(f"/api/v1/event-subscriptions/{sub['id']}")), 404)


def _reader(hooks: Hooks) -> tuple[dict, Api]:
    created = ok(
        hooks.server.admin.post(
            hooks.u(f"/api/v1/tenants/{hooks.tenant_id}/api-keys"), json={"scopes": ["connections:read"]}
        ),
        201,
    )
    return created, Api(created["key"])


def test_d_isolation_between_tenants(hooks: Hooks, server: Server) -> None:
    """Another tenant's key sees none of it (404, as for missing objects)."""
    conn = hooks.connect(name="mine")
    secret = whsec()
    endpoint = hooks.endpoint(conn["id"], secret)
    sub = hooks.subscribe(hooks.subscriber.path("mine"), ["*"])
    ev = stripe_event()
    body = body_of(ev)
    event_id = ok(hooks.post_event(endpoint, body, stripe_signature(body, secret)))["event_id"]
    t = ok(server.admin.post(f"{server.url}/api/v1/tenants", json={"name": unique("stranger")}), 201)
    try:
        k = ok(server.admin.post(f"{server.url}/api/v1/tenants/{t['id']}/api-keys", json={"scopes": ["admin"]}), 201)
        stranger = Api(k["key"])
        for route in (
            f"/api/v1/webhook-endpoints/{endpoint['id']}",
            f"/api/v1/event-subscriptions/{sub['id']}",
            f"/api/v1/events/{event_id}",
            f"/api/v1/events/{event_id}/deliveries",
            f"/api/v1/connections/{conn['id']}/events",
        ):
            error(stranger.get(server.url + route), 404)
        error(stranger.post(f"{server.url}/api/v1/events/{event_id}/redeliver", json={}), 404)
        assert page_of(ok(stranger.get(f"{server.url}/api/v1/events"))) == []
        assert page_of(ok(stranger.get(f"{server.url}/api/v1/webhook-endpoints"))) == []
    finally:
        server.admin.delete(f"{server.url}/api/v1/tenants/{t['id']}")
