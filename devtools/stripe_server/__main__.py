"""``python -m devtools.stripe_server --host 127.0.0.1 --port 12111``: one uvicorn process, state in memory."""

from __future__ import annotations

import argparse
import os
import socket
import sys

import uvicorn

from devtools.stripe_server.app import TRANSPORT_KEY, StripeServer


def _protocol() -> type | str:
    """uvicorn's httptools protocol, handing the raw transport to the app so a fault can drop the connection."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: the app falls back to an unfinished answer
        return "h11"

    class DroppableHttpToolsProtocol(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]
            super().on_headers_complete()

    return DroppableHttpToolsProtocol


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"stripe_server ready on http://{host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.stripe_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port (printed when ready)")
    parser.add_argument("--webhook-url", default=os.environ.get("STRIPE_SERVER_WEBHOOK_URL", ""))
    parser.add_argument("--webhook-secret", default=os.environ.get("STRIPE_SERVER_WEBHOOK_SECRET", "whsec_local"))
    parser.add_argument("--latency-ms", type=int, default=int(os.environ.get("STRIPE_SERVER_LATENCY_MS", "0")))
    parser.add_argument("--log-level", default=os.environ.get("STRIPE_SERVER_LOG_LEVEL", "warning"))
    args = parser.parse_args(argv)
    app = StripeServer(webhook_url=args.webhook_url, webhook_secret=args.webhook_secret, latency_ms=args.latency_ms)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=_protocol(),
        lifespan="on",
        log_level=args.log_level,
        access_log=args.log_level in {"debug", "info"},
    )
    _Server(config).run()
    sys.exit(0)


if __name__ == "__main__":
    main()
