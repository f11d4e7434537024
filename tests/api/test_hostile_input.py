"""Hostile input at the edge: each kind is a 4xx problem document, never a 500, and writes nothing.

One test per kind and endpoint, on SQLite and PostgreSQL (PostgreSQL refuses NUL bytes, so that is where
an unchecked value used to become a 500). "Writes nothing" is checked by counting the rows of every table
before and after the request.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from sqlalchemy.engine import make_url

from app.db import Base
from app.settings import Settings
from tests.factories import TEST_SECRET, Tokens, World, order_body, uid

NUL = "a%00b"  # in a URL
DEEP = 1_000


@dataclass
class Scene:
    """A shop, an order with an open dispute, a thread: real ids for the hostile requests to aim at."""

    shop: str
    buyer_id: str
    order_id: str
    dispute_id: str
    thread_id: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def scene(client: TestClient[Any], auth: Tokens) -> Scene:
    world = World(client, auth)
    shop, buyer_id = world.seller(), uid("buyer")
    order_id = world.order(buyer_id, shop)["order_id"]
    buyer = auth("buyer", buyer_id)
    dispute = client.post(
        "/v1/disputes",
        json={"order_id": order_id, "reason": "damaged", "requested": {"type": "refund_full"}, "description": "x"},
        headers=buyer,
    ).json()
    return Scene(
        shop=shop,
        buyer_id=buyer_id,
        order_id=order_id,
        dispute_id=dispute["dispute_id"],
        thread_id=dispute["thread_id"],
        headers={
            "buyer": buyer,
            "seller": auth("seller", uid("member"), seller_id=shop),
            "agent": auth("agent"),
            "admin": auth("admin"),
            "marketplace": auth.marketplace,
        },
    )


@pytest.fixture(scope="module")
def row_counts(settings: Settings) -> Iterator[Callable[[], dict[str, int]]]:
    url = make_url(settings.database_url)
    engine = sa.create_engine(url.set(drivername="sqlite") if url.drivername.startswith("sqlite") else url)

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0
                for t in Base.metadata.tables.values()
            }

    yield counts
    engine.dispose()


def token(**claims: Any) -> dict[str, str]:
    now = int(time.time())
    return {"Authorization": "Bearer " + jwt.encode({"iat": now, "exp": now + 600, **claims}, TEST_SECRET, "HS256")}


def json_bytes(raw: bytes) -> dict[str, Any]:
    return {"content": raw, "headers": {"Content-Type": "application/json"}}


def forged_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def dispute_body(s: Scene, **over: Any) -> dict[str, Any]:
    return {
        "order_id": s.order_id,
        "reason": "damaged",
        "requested": {"type": "refund_full"},
        "description": "x",
        **over,
    }


def line(title: str) -> list[dict[str, Any]]:
    return [
        {"line_id": "l1", "sku": "S", "title": title, "quantity": 2, "unit_price": {"amount": 2500, "currency": "EUR"}}
    ]


@dataclass
class Hostile:
    expected: int
    who: str  # a role of the scene, or "" when the request carries its own token
    method: str
    path: str
    kwargs: dict[str, Any]


def ask(expected: int, who: str, method: str, path: str, **kwargs: Any) -> Hostile:
    return Hostile(expected, who, method, path, kwargs)


def new_shop() -> str:
    return f"/v1/sellers/{uid('shop')}"


def new_order() -> str:
    return f"/v1/orders/{uid('ord')}"


MACRO = {"title": "t", "body": "b"}
REFUND = {"kind": "partial", "funded_by": "operator", "amount": {"amount": 10, "currency": "EUR"}}
WEBHOOK = {"url": "https://example.com/h", "event_types": ["dispute.opened"]}
NUL_CURSOR = forged_cursor("2024-01-01T00:00:00+00:00", "a" + chr(0))
TWO_FILES = [("file", ("a.txt", b"hi", "text/plain")), ("file", ("b.txt", b"ho", "text/plain"))]
EMPTY_MULTIPART = {"Content-Type": "multipart/form-data; boundary=xx"}

CASES: dict[str, Callable[[Scene], Hostile]] = {
    # NUL bytes in ids taken from the path
    "nul in an order id": lambda s: ask(400, "agent", "GET", f"/v1/orders/{NUL}"),
    "nul in a shop id being created": lambda s: ask(
        400, "marketplace", "PUT", f"/v1/sellers/{NUL}", json={"name": "x"}
    ),
    "nul in a dispute id": lambda s: ask(400, "agent", "GET", f"/v1/disputes/{NUL}/events"),
    "nul in a thread id": lambda s: ask(400, "agent", "GET", f"/v1/threads/{NUL}/messages"),
    "nul in a refund id": lambda s: ask(400, "agent", "GET", f"/v1/refunds/{NUL}"),
    "nul in an attachment id": lambda s: ask(400, "agent", "GET", f"/v1/attachments/{NUL}"),
    "nul in a webhook endpoint id": lambda s: ask(400, "admin", "GET", f"/v1/webhook-endpoints/{NUL}/deliveries"),
    "nul in a buyer id": lambda s: ask(400, "agent", "GET", f"/v1/buyers/{NUL}/credit"),
    "nul in a promo code": lambda s: ask(
        400,
        "marketplace",
        "POST",
        f"/v1/promo-codes/{NUL}/redemptions",
        json={"buyer_id": s.buyer_id, "order_id": s.order_id},
    ),
    # NUL bytes in filters
    "nul in a seller filter": lambda s: ask(400, "agent", "GET", f"/v1/disputes?seller_id={NUL}"),
    "nul in an assignee filter": lambda s: ask(400, "agent", "GET", f"/v1/disputes?assignee_id={NUL}"),
    "nul in a queue filter": lambda s: ask(400, "agent", "GET", f"/v1/queue?seller_id={NUL}"),
    "nul in a thread filter": lambda s: ask(400, "agent", "GET", f"/v1/threads?order_id={NUL}"),
    "nul in a refund filter": lambda s: ask(400, "agent", "GET", f"/v1/refunds?order_id={NUL}"),
    "nul in a message page": lambda s: ask(400, "agent", "GET", f"/v1/threads/{s.thread_id}/messages?after={NUL}"),
    "nul in a forged cursor": lambda s: ask(400, "agent", "GET", f"/v1/disputes?cursor={NUL_CURSOR}"),
    # NUL and other control characters in text
    "nul in a dispute description": lambda s: ask(
        400, "buyer", "POST", "/v1/disputes", json=dispute_body(s, description="a\x00b")
    ),
    "nul in a shop name": lambda s: ask(400, "marketplace", "PUT", new_shop(), json={"name": "a\x00b"}),
    "nul in an order line title": lambda s: ask(
        400, "marketplace", "PUT", new_order(), json=order_body(s.buyer_id, s.shop, lines=line("a\x00"))
    ),
    "nul in the buyer id of an order": lambda s: ask(
        400, "marketplace", "PUT", new_order(), json=order_body("b\x00", s.shop)
    ),
    "nul in a refund reason": lambda s: ask(
        400,
        "agent",
        "POST",
        "/v1/refunds",
        json={"order_id": s.order_id, "reason": "a\x00", **REFUND},
        headers={"Idempotency-Key": uid("key")},
    ),
    "nul in a macro title": lambda s: ask(400, "agent", "POST", "/v1/macros", json={"title": "a\x00", "body": "b"}),
    "nul in a webhook description": lambda s: ask(
        400, "admin", "POST", "/v1/webhook-endpoints", json={**WEBHOOK, "description": "a\x00"}
    ),
    "nul in an action note": lambda s: ask(
        400, "buyer", "POST", f"/v1/disputes/{s.dispute_id}/actions", json={"action": "escalate", "note": "a\x00"}
    ),
    "nul in a thread subject": lambda s: ask(
        400,
        "buyer",
        "POST",
        "/v1/threads",
        json={"audience": "tripartite", "order_id": s.order_id, "subject": "a\x00", "body": "b"},
    ),
    "nul in an idempotency key": lambda s: ask(
        400, "marketplace", "PUT", new_shop(), json={"name": "x"}, headers={"Idempotency-Key": "a\x00b"}
    ),
    "escape sequence in a shop name": lambda s: ask(400, "marketplace", "PUT", new_shop(), json={"name": "a\x1b[2J"}),
    "c1 control in a shop name": lambda s: ask(400, "marketplace", "PUT", new_shop(), json={"name": "a\x85b"}),
    # Invalid UTF-8
    "invalid utf-8 in a json body": lambda s: ask(
        400, "marketplace", "PUT", new_shop(), **json_bytes(b'{"name": "a\xffb"}')
    ),
    "invalid utf-8 in a path": lambda s: ask(400, "agent", "GET", "/v1/orders/a%FFb"),
    "invalid utf-8 in a query value": lambda s: ask(400, "agent", "GET", "/v1/disputes?seller_id=a%FFb"),
    "invalid utf-8 in a query name": lambda s: ask(400, "agent", "GET", "/v1/disputes?a%FFb=1"),
    # Nesting
    "json nested a thousand deep": lambda s: ask(
        400, "marketplace", "PUT", new_shop(), **json_bytes(b"[" * DEEP + b"]" * DEEP)
    ),
    "json nested a thousand deep inside a field": lambda s: ask(
        400, "marketplace", "PUT", new_shop(), **json_bytes(b'{"name":' + b"[" * DEEP + b"]" * DEEP + b"}")
    ),
    # Timestamps that overflow once the escrow hold is added
    "delivered in the year 9999": lambda s: ask(
        400, "marketplace", "PUT", new_order(), json=order_body(s.buyer_id, s.shop, delivered_at="9999-12-31T23:59:59Z")
    ),
    "delivered in the year 1": lambda s: ask(
        400, "marketplace", "PUT", new_order(), json=order_body(s.buyer_id, s.shop, delivered_at="0001-01-01T00:00:00Z")
    ),
    # Uploads
    "upload without a file part": lambda s: ask(
        400, "buyer", "POST", "/v1/attachments", data={"note": "x"}, files={"other": ("a.txt", b"hi", "text/plain")}
    ),
    "upload with two file parts": lambda s: ask(400, "buyer", "POST", "/v1/attachments", files=TWO_FILES),
    "upload with a text field named file": lambda s: ask(
        400, "buyer", "POST", "/v1/attachments", data={"file": "not a file"}, files={"x": ("a", b"", "text/plain")}
    ),
    "upload with no parts": lambda s: ask(
        400, "buyer", "POST", "/v1/attachments", content=b"--xx--\r\n", headers=EMPTY_MULTIPART
    ),
    "upload sent as json": lambda s: ask(415, "buyer", "POST", "/v1/attachments", json={"file": "x"}),
    "form-encoded body to a json operation": lambda s: ask(415, "marketplace", "PUT", new_shop(), data={"name": "x"}),
    # Ids outside the policy, and parameters nobody declared
    "colon in a shop id": lambda s: ask(400, "marketplace", "PUT", "/v1/sellers/kx:y", json={"name": "x"}),
    "colon in the shop id of an order": lambda s: ask(
        400, "marketplace", "PUT", new_order(), json=order_body(s.buyer_id, "kx:y")
    ),
    "id of 65 characters": lambda s: ask(400, "marketplace", "PUT", f"/v1/sellers/{'s' * 65}", json={"name": "x"}),
    "unknown query parameter": lambda s: ask(400, "agent", "GET", "/v1/disputes?priority=critical"),
    # Tokens (401)
    "token whose role is a list": lambda s: ask(401, "", "GET", "/v1/disputes", headers=token(sub="u", role=["buyer"])),
    "token whose role is an object": lambda s: ask(
        401, "", "GET", "/v1/disputes", headers=token(sub="u", role={"a": 1})
    ),
    "token whose seller_id is 300 characters": lambda s: ask(
        401, "", "GET", "/v1/disputes", headers=token(sub="u", role="seller", seller_id="s" * 300)
    ),
    "token whose sub carries nul": lambda s: ask(
        401, "", "GET", "/v1/disputes", headers=token(sub="u\x00", role="agent")
    ),
    "token whose sub carries a colon": lambda s: ask(
        401, "", "GET", "/v1/disputes", headers=token(sub="y:m", role="agent")
    ),
    "token whose name carries nul": lambda s: ask(
        401, "", "POST", "/v1/macros", json=MACRO, headers=token(sub="u", role="agent", name="a\x00")
    ),
    "token whose name is 5000 characters": lambda s: ask(
        401, "", "POST", "/v1/macros", json=MACRO, headers=token(sub="u", role="agent", name="a" * 5000)
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_hostile_input_is_a_problem_document_and_writes_nothing(
    client: TestClient[Any], scene: Scene, row_counts: Callable[[], dict[str, int]], kind: str
) -> None:
    case = CASES[kind](scene)
    headers = {**scene.headers.get(case.who, {}), **case.kwargs.pop("headers", {})}
    before = row_counts()
    response = client.request(case.method, case.path, headers=headers, **case.kwargs)
    expected = case.expected
    assert response.status_code == expected, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == expected
    assert problem["code"]
    assert problem["detail"]
    assert row_counts() == before


def frames(socket: Any, count: int) -> list[dict[str, Any]]:
    return [msgspec.json.decode(socket.receive_text(timeout=10)) for _ in range(count)]


@pytest.mark.parametrize(
    ("url_after", "frame_after"),
    [("9223372036854775808", None), ("²", None), ("9" * 5000, None), (None, 2**63), (None, 10**30)],
)
def test_a_resume_beyond_what_the_event_log_can_number_is_an_error_frame_and_the_socket_lives_on(
    client: TestClient[Any], auth: Tokens, url_after: str | None, frame_after: int | None
) -> None:
    token = auth("agent")["Authorization"].removeprefix("Bearer ")
    query = f"&after_event_id={url_after}" if url_after is not None else ""
    with client.websocket_connect(f"/v1/ws?token={token}{query}") as socket:
        expected = 2 if url_after is not None else 1
        assert frames(socket, expected)[-1]["type"] == ("error" if url_after is not None else "ready")
        if frame_after is not None:
            socket.send_text(msgspec.json.encode({"type": "resume", "after_event_id": frame_after}).decode())
            error = frames(socket, 1)[0]
            assert (error["type"], error["code"]) == ("error", "validation_error")
        socket.send_text('{"type": "ping"}')
        assert frames(socket, 1)[0]["type"] == "pong"
