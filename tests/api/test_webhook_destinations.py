"""Outbound webhooks only go to the public internet: internal addresses are refused when an endpoint is
registered and again at each delivery, and a delivery connects to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from app.settings import Settings
from app.webhooks import destinations
from app.webhooks.service import Claimed, Policy, send
from tests.factories import Tokens, make_settings, uid

PUBLIC = ipaddress.ip_address("93.184.216.34")


@pytest.fixture(scope="module")
def strict_client(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """The service with its default rule (SAV_WEBHOOKS_ALLOW_PRIVATE unset), on the suite's database."""
    from app.main import create_app

    strict = make_settings(settings.database_url, SAV_ATTACHMENTS_DIR=str(tmp_path_factory.mktemp("attachments")))
    assert not strict.webhooks_allow_private
    with TestClient(app=create_app(strict, configure_logs=False), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://localhost:6379/",
        "http://10.0.0.5/hooks",
        "http://192.168.1.1/hooks",
        "http://172.16.0.1/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0:8000/",
        "http://224.0.0.1/",
        "http://[::1]:8000/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a00:1]/",
        "http://2130706433/",  # 127.0.0.1 written as one number
    ],
)
def test_an_endpoint_on_an_internal_address_is_refused(strict_client: TestClient[Any], auth: Tokens, url: str) -> None:
    admin = auth("admin", uid("admin"))
    before = strict_client.get("/v1/webhook-endpoints", params={"limit": 200}, headers=admin).json()["items"]
    response = strict_client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": ["dispute.opened"]}, headers=admin
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] in ("webhook.private_destination", "webhook.unresolvable_host")
    assert problem["errors"][0]["field"] == "url"
    after = strict_client.get("/v1/webhook-endpoints", params={"limit": 200}, headers=admin).json()["items"]
    assert after == before


def test_a_host_that_does_not_resolve_is_refused(strict_client: TestClient[Any], auth: Tokens) -> None:
    response = strict_client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://sav-test.invalid/hooks", "event_types": ["*"]},
        headers=auth("admin"),
    )
    assert (response.status_code, response.json()["code"]) == (400, "webhook.unresolvable_host")


def test_the_development_setting_allows_a_local_receiver(client: TestClient[Any], auth: Tokens) -> None:
    admin = auth("admin")
    response = client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]}, headers=admin
    )
    assert response.status_code == 201, response.text
    client.delete(f"/v1/webhook-endpoints/{response.json()['endpoint_id']}", headers=admin)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:93.184.216.34", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert destinations.is_public(ipaddress.ip_address(address)) is public


def test_production_accepts_only_https() -> None:
    async def check(url: str) -> destinations.Destination:
        return await destinations.check(url, allow_private=False, https_only=True, resolver=lambda *_: public())

    async def public() -> list[destinations.IPAddress]:
        return [PUBLIC]

    with pytest.raises(destinations.UnsafeDestination) as refused:
        asyncio.run(check("http://hooks.example.com/x"))
    assert refused.value.code == "webhook.https_required"
    assert asyncio.run(check("https://hooks.example.com/x")).address == PUBLIC


class Receiver:
    """A local HTTP server that counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def claimed(url: str) -> Claimed:
    return Claimed(
        delivery_id=uid("whd"),
        attempt=1,
        event_id=uid("evt"),
        event_type="dispute.opened",
        payload="{}",
        url=url,
        secret="s" * 32,
        created_at=datetime.now(UTC),
    )


def deliver(item: Claimed, policy: Policy, transport: httpx.AsyncBaseTransport | None = None) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            return await send(client, item, policy)

    return asyncio.run(run())


def test_a_delivery_to_an_internal_address_is_refused_without_connecting(receiver: Receiver) -> None:
    """An endpoint registered while allowed (or whose name now resolves inside) is checked again."""
    refused = deliver(claimed(receiver.url), Policy())
    assert refused.status_code is None
    assert refused.error.startswith("refused: ")
    assert receiver.hits == 0
    # The same delivery where the development setting allows it reaches the receiver.
    assert deliver(claimed(receiver.url), Policy(allow_private=True)).status_code == 204
    assert receiver.hits == 1


def test_a_name_that_now_resolves_inside_is_refused_at_delivery() -> None:
    async def rebound(host: str, port: int) -> list[destinations.IPAddress]:
        return [ipaddress.ip_address("10.0.0.7")]

    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    outcome = deliver(claimed("https://hooks.example.com/sav"), Policy(resolver=rebound), transport)
    assert outcome.error.startswith("refused: ")
    assert sent == []


def test_a_delivery_connects_to_the_address_that_was_checked() -> None:
    async def public(host: str, port: int) -> list[destinations.IPAddress]:
        return [PUBLIC]

    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    outcome = deliver(claimed("https://hooks.example.com:8443/sav?x=1"), Policy(resolver=public), transport)
    assert outcome.status_code == 200
    (request,) = sent
    assert str(request.url) == "https://93.184.216.34:8443/sav?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"  # TLS still verifies the name
