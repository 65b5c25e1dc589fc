"""A local fake of Stripe's Connect OAuth endpoints (connect.stripe.com), for the
black-box suite. Standard library only: `http.server` on a thread per request.

Stripe's endpoints (shapes as in ../shared/STRIPE.md, "Connect OAuth"):

  GET  /oauth/authorize   the end user's consent, simulated: answers 302 to
       redirect_uri?code=ac_…&scope=…&state=… at once. Parameters as Stripe's
       (response_type=code, client_id, scope read_write|read_only [read_only],
       state, redirect_uri, stripe_landing, always_prompt, stripe_user[…]).
       Fake-only parameters, which a test appends to the URL Patchbay built:
         _deny=1          the user declines: redirect_uri?error=access_denied&
                          error_description=…&state=…
         _account=acct_…  the account that consents (default: a new one per
                          consent); the same account twice is a re-link
       A missing client_id or redirect_uri, or a redirect_uri the platform did
       not register (see /_platforms), answers 400 JSON (Stripe shows an error
       page: it never redirects to an unregistered URI). response_type other
       than `code` or an unknown scope redirects with error=invalid_request /
       invalid_scope.
  POST /oauth/token       form grant_type=authorization_code&code=ac_… or
       grant_type=refresh_token&refresh_token=rt_…, client_id, and the platform's
       secret key as client_secret in the body or `Authorization: Bearer sk_…`
       (or Basic with the key as user). Codes are single use. Returns
       access_token (sk_test_…/sk_live_…, the platform key's mode), refresh_token
       (rt_…, unchanged by a refresh), token_type bearer, stripe_user_id,
       stripe_publishable_key, livemode, scope.
  POST /oauth/deauthorize form client_id, stripe_user_id; platform key as bearer
       (or client_secret). -> {"stripe_user_id": "acct_…"}; an account not
       connected to that client_id -> 400 invalid_client.

Errors have OAuth's shape: {"error": "invalid_grant", "error_description": …}.
A platform key is any `sk_test_`/`sk_live_` key longer than 12 characters unless
the client_id was registered through /_platforms, in which case it must be that
key (else 401 invalid_client "No such API key"). A grant's livemode (and the
prefix of its access token) follows the platform key's mode; refreshing or
deauthorizing with a key of the other mode is refused.

Control endpoints (JSON, for the tests only):

  POST /_platforms  {"client_id","secret_key","redirect_uris":[…]} registers a
                    platform (optional; makes the fake check the key and the
                    redirect_uri like Stripe would)
  GET  /_calls      every request to /oauth/* so far, oldest first:
                    {"method","path","query":{…},"form":{…},"authorization",
                    "bearer","client_id","status","time"}. Filters: client_id=,
                    path=, since= (a sequence number: calls with seq > since)
  GET  /_grants     the grants (one per client_id and account):
                    {"client_id","stripe_user_id","livemode","scope",
                    "access_token","refresh_token","connected","deauthorized_at"};
                    filter client_id=
  POST /_down       make /oauth/* answer 503 (text/html, not OAuth), or only the
                    endpoints named in {"endpoints":["token","deauthorize",
                    "authorize"]}; optional {"status": 502}
  POST /_up         answer normally again
  POST /_reset      forget everything

Usage: python fake_connect.py --port 8421 [--host 127.0.0.1]
Or in-process: `fake = FakeConnect(port=0).start(); fake.url; fake.stop()`.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ALNUM = string.ascii_letters + string.digits
SCOPES = ("read_write", "read_only")
ENDPOINTS = ("authorize", "token", "deauthorize")

log = logging.getLogger("fake_connect")


def _random(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(n))


def _key_mode(key: str) -> str | None:
    """`test` or `live` for a usable platform secret key, else None."""
    for mode in ("test", "live"):
        if key.startswith(f"sk_{mode}_") and len(key) > 12:
            return mode
    return None


def _mask(key: str) -> str:
    return key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "****"


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@dataclass
class Platform:
    client_id: str
    secret_key: str
    redirect_uris: list[str]


@dataclass
class Code:
    code: str
    client_id: str
    stripe_user_id: str
    scope: str
    redirect_uri: str
    used: bool = False


@dataclass
class Grant:
    client_id: str
    stripe_user_id: str
    livemode: bool
    scope: str
    access_token: str
    refresh_token: str
    publishable_key: str
    connected: bool = True
    deauthorized_at: float | None = None


@dataclass
class Call:
    seq: int
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorization: str | None
    bearer: str | None
    client_id: str | None
    status: int = 0
    time: float = field(default_factory=time.time)


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


class State:
    """Everything the fake knows; one lock guards it all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.platforms: dict[str, Platform] = {}
        self.codes: dict[str, Code] = {}
        self.grants: dict[tuple[str, str], Grant] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}
        self.calls: list[Call] = []
        self.down: dict[str, int] = {}

    # -- OAuth ----------------------------------------------------------------

    def authorize(self, q: dict[str, str]) -> str:
        """The consent: returns the Location to redirect to, or raises OAuthError
        for what Stripe shows as an error page."""
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        if not client_id.startswith("ca_"):
            raise OAuthError(400, "invalid_client", f"No such application: '{client_id}'")
        platform = self.platforms.get(client_id)
        if not redirect_uri:
            if platform and platform.redirect_uris:
                redirect_uri = platform.redirect_uris[0]
            else:
                raise OAuthError(400, "invalid_request", "No redirect_uri provided")
        if platform and redirect_uri not in platform.redirect_uris:
            raise OAuthError(400, "invalid_redirect_uri", f"Invalid redirect URI '{redirect_uri}'")
        state = q.get("state")
        extra = {"state": state} if state is not None else {}
        if q.get("response_type") != "code":
            return _with_query(
                redirect_uri,
                {"error": "invalid_request", "error_description": "response_type must be 'code'", **extra},
            )
        scope = q.get("scope") or "read_only"
        if scope not in SCOPES:
            return _with_query(
                redirect_uri, {"error": "invalid_scope", "error_description": f"Invalid scope: {scope}", **extra}
            )
        if q.get("_deny") in ("1", "true"):
            return _with_query(
                redirect_uri,
                {"error": "access_denied", "error_description": "The user denied your request", **extra},
            )
        account = q.get("_account") or _random("acct_", 16)
        code = _random("ac_", 32)
        self.codes[code] = Code(code, client_id, account, scope, redirect_uri)
        return _with_query(redirect_uri, {"code": code, "scope": scope, **extra})

    def _platform_key(self, call: Call, client_id: str) -> str:
        key = call.bearer or call.form.get("client_secret") or ""
        if not key:
            raise OAuthError(401, "invalid_client", "No API key provided")
        if _key_mode(key) is None:
            raise OAuthError(401, "invalid_client", f"Invalid API Key provided: {_mask(key)}")
        platform = self.platforms.get(client_id)
        if platform and not secrets.compare_digest(platform.secret_key, key):
            raise OAuthError(401, "invalid_client", f"No such API key: {_mask(key)}")
        return key

    def token(self, call: Call) -> dict[str, Any]:
        form = call.form
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code_value = form.get("code", "")
            code = self.codes.get(code_value)
            client_id = form.get("client_id") or (code.client_id if code else "")
            key = self._platform_key(call, client_id)
            if code is None or code.used or code.client_id != client_id:
                raise OAuthError(400, "invalid_grant", f"Authorization code does not exist: {code_value}")
            code.used = True
            livemode = _key_mode(key) == "live"
            gkey = (client_id, code.stripe_user_id)
            grant = self.grants.get(gkey)
            if grant is None or not grant.connected:
                mode = "live" if livemode else "test"
                grant = Grant(
                    client_id=client_id,
                    stripe_user_id=code.stripe_user_id,
                    livemode=livemode,
                    scope=code.scope,
                    access_token=_random(f"sk_{mode}_", 32),
                    refresh_token=_random("rt_", 32),
                    publishable_key=_random(f"pk_{mode}_", 32),
                )
                self.grants[gkey] = grant
                self.refresh_tokens[grant.refresh_token] = gkey
            else:
                grant.scope = code.scope
            return self._token_response(grant)
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            gkey = self.refresh_tokens.get(token)
            client_id = form.get("client_id") or (gkey[0] if gkey else "")
            key = self._platform_key(call, client_id)
            grant = self.grants.get(gkey) if gkey else None
            if grant is None or not grant.connected or grant.client_id != client_id:
                raise OAuthError(400, "invalid_grant", f"Refresh token does not exist: {token}")
            if grant.livemode != (_key_mode(key) == "live"):
                raise OAuthError(400, "invalid_grant", "The refresh token's mode does not match the API key's")
            scope = form.get("scope") or grant.scope
            if scope not in SCOPES or (grant.scope == "read_only" and scope == "read_write"):
                raise OAuthError(400, "invalid_scope", f"Invalid scope: {scope}")
            mode = "live" if grant.livemode else "test"
            grant.access_token = _random(f"sk_{mode}_", 32)
            grant.scope = scope
            return self._token_response(grant)
        if not grant_type:
            raise OAuthError(400, "invalid_request", "No grant type specified")
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")

    @staticmethod
    def _token_response(grant: Grant) -> dict[str, Any]:
        return {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "token_type": "bearer",
            "stripe_user_id": grant.stripe_user_id,
            "stripe_publishable_key": grant.publishable_key,
            "livemode": grant.livemode,
            "scope": grant.scope,
        }

    def deauthorize(self, call: Call) -> dict[str, Any]:
        client_id = call.form.get("client_id", "")
        account = call.form.get("stripe_user_id", "")
        if not client_id:
            raise OAuthError(400, "invalid_request", "No client_id provided")
        if not account:
            raise OAuthError(400, "invalid_request", "No stripe_user_id provided")
        key = self._platform_key(call, client_id)
        grant = self.grants.get((client_id, account))
        if grant is None or not grant.connected or grant.livemode != (_key_mode(key) == "live"):
            raise OAuthError(
                400,
                "invalid_client",
                f"This application is not connected to stripe account {account}, or that account does not exist.",
            )
        grant.connected = False
        grant.deauthorized_at = time.time()
        self.refresh_tokens.pop(grant.refresh_token, None)
        return {"stripe_user_id": account}


class Handler(BaseHTTPRequestHandler):
    server: "Server"
    protocol_version = "HTTP/1.1"

    # -- plumbing ---------------------------------------------------------------

    def log_message(self, fmt: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), fmt % args)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _split(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path, query = self._split()
        body = self._body()
        try:
            if path.startswith("/oauth/"):
                self._oauth(method, path, query, body)
            elif path.startswith("/_"):
                self._control(method, path, query, body)
            else:
                self._json(404, {"error": "not_found", "error_description": f"No such route: {method} {path}"})
        except Exception as e:  # a bug in the fake must show, not hang the client
            log.exception("fake_connect: %s %s failed", method, path)
            self._json(500, {"error": "fake_bug", "error_description": repr(e)})

    # -- /oauth/* -----------------------------------------------------------------

    def _oauth(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        state = self.server.state
        endpoint = path[len("/oauth/") :]
        ctype = self.headers.get("Content-Type", "")
        form: dict[str, str] = {}
        if body and ctype.split(";")[0].strip() == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        authorization = self.headers.get("Authorization")
        bearer = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                bearer = value.strip()
            elif scheme.lower() == "basic":
                try:
                    bearer = base64.b64decode(value.strip()).decode().split(":", 1)[0]
                except ValueError:
                    bearer = None
        with state.lock:
            call = Call(
                seq=len(state.calls) + 1,
                method=method,
                path=path,
                query=query,
                form=form,
                authorization=authorization,
                bearer=bearer,
                client_id=form.get("client_id") or query.get("client_id"),
            )
            state.calls.append(call)
            status, payload, headers = self._answer(state, endpoint, method, ctype, call)
            call.status = status
        if isinstance(payload, bytes):
            self._send(status, payload, "text/html; charset=utf-8" if payload else "text/plain", headers)
        else:
            self._json(status, payload, headers)

    @staticmethod
    def _answer(
        state: State, endpoint: str, method: str, ctype: str, call: Call
    ) -> tuple[int, Any, dict[str, str] | None]:
        """Status, body (bytes or JSON-able) and extra headers for an /oauth/* call."""
        down = state.down.get(endpoint) or state.down.get("*")
        if down:
            return down, b"<html><body><h1>Service Unavailable</h1></body></html>", None
        expected = {"authorize": "GET", "token": "POST", "deauthorize": "POST"}.get(endpoint)
        if expected is None:
            return 404, {"error": "invalid_request", "error_description": f"Unrecognized request URL ({call.path})"}, None
        if method != expected:
            return 405, {"error": "invalid_request", "error_description": f"Use {expected} for {call.path}"}, None
        try:
            if endpoint == "authorize":
                return 302, b"", {"Location": state.authorize(call.query)}
            if not ctype.startswith("application/x-www-form-urlencoded"):
                raise OAuthError(400, "invalid_request", "Expected application/x-www-form-urlencoded")
            return 200, state.token(call) if endpoint == "token" else state.deauthorize(call), None
        except OAuthError as e:
            return e.status, {"error": e.error, "error_description": e.description}, None

    # -- control ------------------------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        state = self.server.state
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return self._json(400, {"error": "bad JSON"})
        with state.lock:
            if (method, path) == ("GET", "/_calls"):
                since = int(query.get("since", "0"))
                calls = [
                    asdict(c)
                    for c in state.calls
                    if c.seq > since
                    and ("client_id" not in query or c.client_id == query["client_id"])
                    and ("path" not in query or c.path == query["path"])
                ]
                return self._json(200, {"data": calls, "last_seq": len(state.calls)})
            if (method, path) == ("GET", "/_grants"):
                grants = [
                    asdict(g)
                    for g in state.grants.values()
                    if "client_id" not in query or g.client_id == query["client_id"]
                ]
                return self._json(200, {"data": grants})
            if (method, path) == ("POST", "/_platforms"):
                try:
                    p = Platform(payload["client_id"], payload["secret_key"], list(payload.get("redirect_uris", [])))
                except (KeyError, TypeError):
                    return self._json(400, {"error": "client_id and secret_key required"})
                state.platforms[p.client_id] = p
                return self._json(200, {"client_id": p.client_id})
            if (method, path) == ("POST", "/_down"):
                status = int(payload.get("status", 503))
                for e in payload.get("endpoints") or ["*"]:
                    if e != "*" and e not in ENDPOINTS:
                        return self._json(400, {"error": f"unknown endpoint {e!r}"})
                    state.down[e] = status
                return self._json(200, {"down": state.down})
            if (method, path) == ("POST", "/_up"):
                state.down.clear()
                return self._json(200, {"down": {}})
            if (method, path) == ("POST", "/_reset"):
                state.reset()
                return self._json(200, {})
            if (method, path) == ("GET", "/_health"):
                return self._json(200, {"ok": True})
        return self._json(404, {"error": f"no control route {method} {path}"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, Handler)
        self.state = State()


class FakeConnect:
    """The fake on a background thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = Server((host, port))
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-connect", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def state(self) -> State:
        return self.server.state

    def start(self) -> "FakeConnect":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.access_log else logging.WARNING, format="fake_connect: %(message)s"
    )
    server = Server((args.host, args.port))
    print(f"fake_connect: serving on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
