"""Runs localstripe's aiohttp app on 127.0.0.1 (its own CLI binds `::`).

localstripe builds one module-level `aiohttp.web.Application` in
`localstripe.server` (`app`) and starts it from `server.start()` with a socket
bound to `::`. This wrapper imports that app and serves it on the loopback
address and port given. It also keeps localstripe's state in memory: upstream
pickles its whole store to the fixed path /tmp/localstripe.pickle after every
write, which parallel runs would share and which a later run would reload.

Usage: python localstripe_server.py --port 8420 [--host 127.0.0.1]
"""

import argparse
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def _no_dump(self):  # the store stays in memory for this process only
    return None


resources.Store.dump_to_disk = _no_dump


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
