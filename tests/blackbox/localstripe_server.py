"""Runs localstripe's aiohttp app on 127.0.0.1 (its own CLI binds `::`).

localstripe builds one module-level `aiohttp.web.Application` in
`localstripe.server` (`app`) and starts it from `server.start()` with a socket
bound to `::`. This wrapper imports that app and serves it on the loopback
address and port given. It also keeps localstripe's state in memory: upstream
pickles its whole store to the fixed path /tmp/localstripe.pickle after every
write, which parallel runs would share and which a later run would reload.

Two control routes of its own, for the black-box tests (no authentication,
like localstripe's /_config/ routes):

  GET  /_blackbox/requests?since=N   the requests received after sequence
       number N (oldest first, the last 10,000 kept): method, path, query
       parameter names, header names, and the SHA-256 of the API key in
       Authorization (never the key), plus `last_seq`. Lets a test see which
       credential Patchbay sent upstream, and that a refused request sent nothing.
  POST /_blackbox/refuse_key {"key": "sk_…", "paths": ["/v1/customers"]}
       from now on, requests with this key whose path starts with one of
       `paths` get Stripe's answer to a revoked key (401, "Invalid API Key
       provided: sk_test_****…abcd"). localstripe itself accepts any `sk_` key
       longer than 5 characters; this stands for a key rolled in Stripe's
       dashboard. Limited to paths so that Patchbay's own test calls
       (/v1/account, /v1/balance) still pass and leave the connection active.

Usage: python localstripe_server.py --port 8420 [--host 127.0.0.1]
"""

import argparse
import base64
import collections
import hashlib
import itertools
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def _no_dump(self):  # the store stays in memory for this process only
    return None


resources.Store.dump_to_disk = _no_dump


_SEQ = itertools.count(1)
_REQUESTS: collections.deque = collections.deque(maxlen=10_000)
_REFUSED: dict[str, tuple[str, ...]] = {}


def _api_key(request: web.Request) -> str | None:
    """The key in Authorization, Bearer or Basic (as localstripe reads it)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer":
        return value
    if scheme == "Basic":
        try:
            return base64.b64decode(value).decode().split(":")[0]
        except ValueError:
            return None
    return None


def _masked(key: str) -> str:
    prefix = key[: key.index("_", 3) + 1] if key.count("_") >= 2 else key[:3]
    return prefix + "*" * max(len(key) - len(prefix) - 4, 0) + key[-4:]


@web.middleware
async def blackbox_controls(request: web.Request, handler):
    if request.path == "/_blackbox/requests" and request.method == "GET":
        since = int(request.query.get("since", "0"))
        data = [r for r in _REQUESTS if r["seq"] > since]
        last = _REQUESTS[-1]["seq"] if _REQUESTS else 0
        return web.json_response({"data": data, "last_seq": last})
    if request.path == "/_blackbox/refuse_key" and request.method == "POST":
        body = await request.json()
        key, paths = body.get("key"), body.get("paths")
        if not isinstance(key, str) or not key or not (
            isinstance(paths, list) and paths and all(isinstance(p, str) and p.startswith("/") for p in paths)
        ):
            return web.json_response({"error": "want {key, paths: ['/v1/…']}"}, status=400)
        _REFUSED[key] = tuple(paths)
        return web.json_response({"refused": _masked(key), "paths": paths})

    key = _api_key(request)
    _REQUESTS.append(
        {
            "seq": next(_SEQ),
            "method": request.method,
            "path": request.path,
            "query_keys": sorted(set(request.query.keys())),
            "header_names": sorted({h.lower() for h in request.headers.keys()}),
            "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
        }
    )
    if key in _REFUSED and any(request.path.startswith(p) for p in _REFUSED[key]):
        # Stripe's own answer to a revoked or rolled key.
        return web.json_response(
            {"error": {"message": f"Invalid API Key provided: {_masked(key)}", "type": "invalid_request_error"}},
            status=401,
        )
    return await handler(request)


# Outermost, so it sees every request before localstripe's own middlewares.
app.middlewares.insert(0, blackbox_controls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="localstripe: %(message)s")
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=access_log,
        shutdown_timeout=1.0,
        print=lambda msg: logging.info(msg.strip()),
    )


if __name__ == "__main__":
    main()
