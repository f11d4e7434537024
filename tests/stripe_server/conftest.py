"""The local Stripe-compatible server as a real process (``python -m devtools.stripe_server --port 0``),
started by tests/e2e/helpers.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.helpers import StripeServerProcess, running_stripe_server


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeServerProcess]:
    with running_stripe_server() as server:
        yield server


@pytest.fixture
def server(stripe_server: StripeServerProcess) -> StripeServerProcess:
    """The session's server, reset: no objects, faults, latency, webhook, or stored idempotency keys."""
    stripe_server.ctl("POST", "reset")
    stripe_server.ctl("POST", "webhook", url="")
    return stripe_server


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Received]]]:
    """A tiny webhook endpoint (http.server in a thread): its URL and what it received."""
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()
