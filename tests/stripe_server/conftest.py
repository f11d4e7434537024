"""The local Stripe-compatible server as a real process (``python -m devtools.stripe_server --port 0``)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from devtools.stripe_server.process import NotStarted, start

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_local_0123456789"


@dataclass
class StripeServerProcess:
    url: str
    process: subprocess.Popen[str]
    control: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.control = httpx.Client(base_url=self.url, timeout=10)

    def client(self, *, retries: int = 0, api_key: str = API_KEY) -> stripe.StripeClient:
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.url},
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
            max_network_retries=retries,
        )

    def ctl(self, method: str, endpoint: str, /, **data: Any) -> Any:
        if method == "GET":
            response = self.control.get(f"/_control/{endpoint}", params=data)
        else:
            response = self.control.request(method, f"/_control/{endpoint}", json=data)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        return self.control.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeServerProcess]:
    try:
        process, url = start()
    except NotStarted as exc:
        pytest.fail(str(exc))
    server = StripeServerProcess(url=url, process=process)
    try:
        yield server
    finally:
        server.control.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


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
