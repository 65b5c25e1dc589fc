"""Fixtures for the black-box suite: HTTP clients for the running Patchbay,
tenants with API keys, generated Stripe keys, and the checks every test gets.

The suite talks to a Patchbay that is already running (`scripts/blackbox`
starts it against localstripe). It reads:

  PATCHBAY_URL          e.g. http://127.0.0.1:41234
  PATCHBAY_ADMIN_TOKEN  the platform admin token the server was started with
  LOCALSTRIPE_URL       e.g. http://127.0.0.1:41235 (the server's Stripe API base)
  FAKE_CONNECT_URL      e.g. http://127.0.0.1:41236 (fake_connect.py, the server's
                        PATCHBAY_STRIPE_CONNECT_BASE: Connect OAuth)
  BLACKBOX_REPLICAS     optional; above 1 when PATCHBAY_URL is nginx round-robin
                        over that many replicas (scripts/blackbox-replicas):
                        tests marked `single_server_only` skip, with their reason

Every response any test receives from Patchbay is recorded. After each test,
an autouse fixture asserts over that test's responses that:
  - none contains a Stripe key submitted anywhere in the session, nor the
    admin token (body or headers);
  - every response carries an `x-request-id` header;
  - every error (4xx/5xx) has the envelope
    {"error":{"type","code","message","request_id"}} and its request_id is the
    response's x-request-id.
"""

from __future__ import annotations

import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

BASE_URL = os.environ.get("PATCHBAY_URL", "").rstrip("/")
ADMIN_TOKEN = os.environ.get("PATCHBAY_ADMIN_TOKEN", "")
LOCALSTRIPE_URL = os.environ.get("LOCALSTRIPE_URL", "").rstrip("/")
FAKE_CONNECT_URL = os.environ.get("FAKE_CONNECT_URL", "").rstrip("/")
REPLICAS = int(os.environ.get("BLACKBOX_REPLICAS") or "1")


def single_server_only(reason: str) -> pytest.MarkDecorator:
    """Skips a test (or, as `pytestmark`, a module) when the suite runs through
    several replicas; `reason` says why it needs the single server."""
    return pytest.mark.skipif(REPLICAS > 1, reason=f"replica mode: {reason}")

ALNUM = string.ascii_letters + string.digits

ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "rate_limit_error",
    "api_connection_error",
    "api_error",
}


# --------------------------------------------------------------------------
# Recording responses and the secrets that must never come back
# --------------------------------------------------------------------------


class Recorder:
    """Every Patchbay response of the session, and every secret submitted."""

    def __init__(self) -> None:
        self.responses: list[requests.Response] = []
        self.secrets: set[str] = set()

    def add_secret(self, value: Any) -> None:
        # Short strings (" ", "", "garbage") could appear by chance; real and
        # generated keys are long and random.
        if isinstance(value, str) and len(value.strip()) >= 12:
            self.secrets.add(value.strip())
            # The random part alone must not leak either (a hint shows 4 chars).
            parts = value.strip().split("_", 2)
            if len(parts) == 3 and len(parts[2]) >= 12:
                self.secrets.add(parts[2])


RECORDER = Recorder()
if ADMIN_TOKEN:
    RECORDER.add_secret(ADMIN_TOKEN)


def _record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    RECORDER.responses.append(response)


def _collect_secrets(payload: Any) -> None:
    """Registers every `api_key` value found in a JSON request body."""
    if isinstance(payload, dict):
        for k, v in payload.items():
            if k == "api_key":
                RECORDER.add_secret(v)
            else:
                _collect_secrets(v)
    elif isinstance(payload, list):
        for v in payload:
            _collect_secrets(v)


class Api(requests.Session):
    """A session against Patchbay; paths starting with `/` are joined to the base URL."""

    def __init__(self, token: str | None = None, *, bearer: bool = False) -> None:
        super().__init__()
        self.token = token
        if token is not None:
            if bearer:
                self.headers["Authorization"] = f"Bearer {token}"
            else:
                self.headers["x-api-key"] = token
        self.hooks["response"].append(_record)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if url.startswith("/"):
            url = BASE_URL + url
        kwargs.setdefault("timeout", 60)
        if "json" in kwargs:
            _collect_secrets(kwargs["json"])
        return super().request(method, url, *args, **kwargs)


# --------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------


def describe(r: requests.Response) -> str:
    return f"{r.request.method} {r.request.path_url} -> {r.status_code}: {r.text[:800]}"


def json_of(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"not JSON: {describe(r)}") from None


def ok(r: requests.Response, status: int = 200) -> Any:
    """Asserts the status and returns the JSON body."""
    assert r.status_code == status, describe(r)
    return json_of(r)


def error(r: requests.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    """Asserts an error envelope with this status (and code, param) and returns `error`."""
    assert r.status_code == status, describe(r)
    body = json_of(r)
    assert isinstance(body, dict) and set(body) == {"error"}, describe(r)
    err = body["error"]
    if code is not None:
        assert err.get("code") == code, describe(r)
    if param is not None:
        assert err.get("param") == param, describe(r)
    return err


def check_envelope(r: requests.Response) -> None:
    rid = r.headers.get("x-request-id")
    assert rid, f"no x-request-id header: {describe(r)}"
    if r.status_code >= 400:
        assert r.headers.get("content-type", "").startswith("application/json"), describe(r)
        body = json_of(r)
        assert isinstance(body, dict) and set(body) == {"error"}, describe(r)
        err = body["error"]
        for k in ("type", "code", "message", "request_id"):
            assert isinstance(err.get(k), str) and err[k], f"error.{k} missing: {describe(r)}"
        assert err["type"] in ERROR_TYPES, describe(r)
        assert err["request_id"] == rid, f"request_id {err['request_id']} != header {rid}"
        assert set(err) <= {"type", "code", "message", "param", "request_id"}, describe(r)


def check_no_secrets(responses: Iterable[requests.Response]) -> None:
    for r in responses:
        text = r.text
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        for s in RECORDER.secrets:
            assert s not in text, f"a submitted secret came back in: {r.request.method} {r.request.path_url}"
            assert s not in headers, f"a submitted secret came back in headers of {r.request.path_url}"


@pytest.fixture(autouse=True)
def response_checks():
    """Runs the checks described in the module docstring on each test's responses."""
    start = len(RECORDER.responses)
    yield
    mine = RECORDER.responses[start:]
    check_no_secrets(mine)
    for r in mine:
        check_envelope(r)


# --------------------------------------------------------------------------
# Environment, clients, generated keys
# --------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def environment() -> None:
    missing = [
        n
        for n, v in (
            ("PATCHBAY_URL", BASE_URL),
            ("PATCHBAY_ADMIN_TOKEN", ADMIN_TOKEN),
            ("LOCALSTRIPE_URL", LOCALSTRIPE_URL),
            ("FAKE_CONNECT_URL", FAKE_CONNECT_URL),
        )
        if not v
    ]
    if missing:
        pytest.exit(
            f"set {', '.join(missing)} (scripts/blackbox starts Patchbay, localstripe and fake_connect.py and sets them)",
            returncode=4,
        )


def stripe_key(kind: str = "sk", mode: str = "test", length: int = 24) -> str:
    """A fresh, well-formed Stripe key (`sk_test_…`), registered as a secret."""
    key = f"{kind}_{mode}_" + "".join(secrets.choice(ALNUM) for _ in range(length))
    RECORDER.add_secret(key)
    return key


def hint_of(key: str) -> str:
    prefix, _, _ = key.rpartition("_")
    return f"{prefix}_…{key[-4:]}"


def stable(obj: dict) -> dict:
    """A connection without the fields the background validator keeps moving."""
    return {k: v for k, v in obj.items() if k not in ("last_validated_at",)}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def now() -> datetime:
    return datetime.now(timezone.utc)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def admin() -> Api:
    return Api(ADMIN_TOKEN)


@pytest.fixture
def anon() -> Api:
    return Api()


@dataclass
class Tenant:
    """A tenant with an admin-scoped API key and a client using it."""

    id: str
    key: str
    key_id: str
    api: Api
    admin: Api
    extra_keys: list[str] = field(default_factory=list)

    def new_key(self, scopes: list[str], name: str | None = None) -> tuple[dict, Api]:
        body: dict[str, Any] = {"scopes": scopes}
        if name:
            body["name"] = name
        created = ok(self.admin.post(f"/api/v1/tenants/{self.id}/api-keys", json=body), 201)
        return created, Api(created["key"])

    def connect(self, api_key: str | None = None, **fields: Any) -> dict:
        """Creates a connection (201 expected) and returns it."""
        body = {"provider": "stripe", "api_key": api_key or stripe_key(), **fields}
        return ok(self.api.post("/api/v1/connections", json=body), 201)

    def connections(self, **params: Any) -> list[dict]:
        """Every connection of the tenant (walks all pages)."""
        out: list[dict] = []
        after = None
        while True:
            q = {"limit": 100, **params}
            if after:
                q["starting_after"] = after
            page = ok(self.api.get("/api/v1/connections", params=q))
            out += page["data"]
            if not page["has_more"]:
                return out
            after = page["data"][-1]["id"]


@pytest.fixture
def make_tenant(admin: Api):
    created: list[str] = []

    def make(name: str | None = None, scopes: list[str] | None = None) -> Tenant:
        t = ok(admin.post("/api/v1/tenants", json={"name": name or unique("tenant")}), 201)
        created.append(t["id"])
        k = ok(
            admin.post(f"/api/v1/tenants/{t['id']}/api-keys", json={"scopes": scopes or ["admin"], "name": "test"}),
            201,
        )
        return Tenant(id=t["id"], key=k["key"], key_id=k["id"], api=Api(k["key"]), admin=admin)

    yield make
    for tid in created:
        r = admin.delete(f"/api/v1/tenants/{tid}")
        assert r.status_code in (200, 404), describe(r)


@pytest.fixture
def tenant(make_tenant) -> Tenant:
    return make_tenant()


@pytest.fixture
def other_tenant(make_tenant) -> Tenant:
    return make_tenant()


# --------------------------------------------------------------------------
# The Connect OAuth fake (fake_connect.py)
# --------------------------------------------------------------------------


class ConnectFake:
    """Drives the Connect OAuth fake: its control endpoints, and the end user's
    browser at its authorize page. Its responses are not Patchbay's, so they go
    through a plain session (not recorded, not checked)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def _get(self, route: str, **params: Any) -> Any:
        r = self.http.get(self.url + route, params={k: v for k, v in params.items() if v is not None}, timeout=10)
        r.raise_for_status()
        return r.json()

    def _post(self, route: str, body: dict | None = None) -> Any:
        r = self.http.post(self.url + route, json=body or {}, timeout=10)
        r.raise_for_status()
        return r.json()

    def register(self, client_id: str, secret_key: str, redirect_uris: list[str]) -> None:
        """Makes the fake hold this platform to its key and redirect URIs, as Stripe would."""
        self._post("/_platforms", {"client_id": client_id, "secret_key": secret_key, "redirect_uris": redirect_uris})

    def calls(self, client_id: str | None = None, path: str | None = None, since: int | None = None) -> list[dict]:
        """The requests the fake received at /oauth/*, oldest first."""
        return self._get("/_calls", client_id=client_id, path=path, since=since)["data"]

    def last_seq(self) -> int:
        return self._get("/_calls")["last_seq"]

    def grants(self, client_id: str) -> list[dict]:
        """The grants of a client id; their tokens become secrets that Patchbay must never show."""
        grants = self._get("/_grants", client_id=client_id)["data"]
        for g in grants:
            RECORDER.add_secret(g["access_token"])
            RECORDER.add_secret(g["refresh_token"])
        return grants

    def down(self, *endpoints: str, status: int = 503) -> None:
        """Makes /oauth/<endpoint> (all of them by default) answer `status` with an HTML page."""
        self._post("/_down", {"endpoints": list(endpoints) or None, "status": status})

    def up(self) -> None:
        self._post("/_up")

    def consent(self, authorize_url: str, **fake_params: str) -> str:
        """The end user at Stripe's authorize page: follows `authorize_url` (as
        Patchbay built it, plus the fake's `_deny`/`_account` parameters) and
        returns where Stripe sends the browser back (the Location of its 302).
        The code in it is registered as a secret."""
        assert authorize_url.startswith(self.url + "/oauth/authorize?"), authorize_url
        r = self.http.get(authorize_url, params=fake_params or None, allow_redirects=False, timeout=10)
        assert r.status_code == 302, f"authorize -> {r.status_code}: {r.text[:300]}"
        location = r.headers["Location"]
        code = dict(parse_qsl(urlsplit(location).query)).get("code")
        if code:
            RECORDER.add_secret(code)
        return location


@pytest.fixture(scope="session")
def connect_fake() -> ConnectFake:
    return ConnectFake(FAKE_CONNECT_URL)


@pytest.fixture
def connect(connect_fake: ConnectFake):
    """The Connect fake; answering normally again after the test, whatever it did."""
    yield connect_fake
    connect_fake.up()
