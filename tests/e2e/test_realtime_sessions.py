"""A WebSocket lives as long as its token, and a client cannot make the server work without bound (a
flood of resumes or pings): a real uvicorn process, real `websockets` clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.events.connection import CLOSE_TOO_MANY_FRAMES, FRAME_BURST, FRAME_RATE
from tests.e2e.helpers import Service, drain, open_socket, open_thread, post, put, read_until_closed, token_of
from tests.factories import Tokens, order_body, uid

pytestmark = pytest.mark.slow

# Long enough for the socket to be opened and to receive one message first, even on a loaded machine.
SHORT_TTL = 10


@pytest.fixture
def parties(service: Service, auth: Tokens) -> dict[str, Any]:
    with service.client() as http:
        shop, buyer, order = uid("shop"), uid("buyer"), uid("ord")
        put(http, f"/v1/sellers/{shop}", {"name": shop}, auth.marketplace)
        put(http, f"/v1/orders/{order}", order_body(buyer, shop), auth.marketplace)
    return {
        "buyer_id": buyer,
        "buyer": auth("buyer", buyer),
        "seller": auth("seller", uid("m"), seller_id=shop),
        "order": order,
    }


def message_bodies(frames: list[dict[str, Any]]) -> list[str]:
    return [f["data"]["body"] for f in frames if f.get("type") == "message.created"]


async def test_a_socket_is_closed_with_4401_when_its_token_expires_and_nothing_after_exp_reaches_it(
    service: Service, auth: Tokens, parties: dict[str, Any]
) -> None:
    p = parties
    thread = await asyncio.to_thread(open_thread, service, p["buyer"], audience="buyer_seller", order_id=p["order"])
    short = auth("buyer", p["buyer_id"], ttl_seconds=SHORT_TTL)
    exp = jwt.decode(token_of(short), options={"verify_signature": False})["exp"]
    expiring = await open_socket(service, short)
    lasting = await open_socket(service, p["buyer"])
    try:
        await asyncio.to_thread(post, service, p["seller"], thread["thread_id"], "before")
        before = await drain(expiring)
        assert "before" in message_bodies(before)  # it works until its token expires
        await drain(lasting)

        await asyncio.sleep(max(exp - time.time(), 0) + 0.2)
        await asyncio.to_thread(post, service, p["seller"], thread["thread_id"], "after")
        assert message_bodies(await drain(lasting)) == ["after"]  # delivered where the token is still valid
        with contextlib.suppress(ConnectionClosed):  # a resume after exp replays nothing
            await expiring.send(json.dumps({"type": "resume", "after_event_id": 0}))
        after, code = await read_until_closed(expiring)
        assert code == 4401
        assert [f for f in after if "event_id" in f] == []
        assert [f.get("code") for f in after] == ["auth.expired_token"]
    finally:
        await expiring.close()
        await lasting.close()


async def test_a_connection_cannot_be_opened_with_an_expired_token(
    service: Service, auth: Tokens, parties: dict[str, Any]
) -> None:
    expired = auth("buyer", parties["buyer_id"], ttl_seconds=-1)
    async with connect(f"{service.ws_url}?token={token_of(expired)}") as ws:
        frames, code = await read_until_closed(ws)
    assert code == 4401
    assert [f.get("code") for f in frames] == ["auth.expired_token"]


@pytest.mark.parametrize("kind", ["resume", "ping"])
async def test_a_flood_of_client_frames_is_cut_off_after_a_bounded_amount_of_work(
    service: Service, parties: dict[str, Any], kind: str
) -> None:
    p = parties
    thread = await asyncio.to_thread(open_thread, service, p["buyer"], audience="buyer_seller", order_id=p["order"])
    for text in ("one", "two", "three"):
        await asyncio.to_thread(post, service, p["seller"], thread["thread_id"], text)
    ws = await open_socket(service, p["buyer"], resume=0)
    visible = len([f for f in await drain(ws) if "event_id" in f])
    assert visible >= 4
    frame = json.dumps({"type": "resume", "after_event_id": 0} if kind == "resume" else {"type": "ping"})
    started = time.monotonic()
    try:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(300):
                await ws.send(frame)
        got, code = await read_until_closed(ws)
    finally:
        await ws.close()
    assert code == CLOSE_TOO_MANY_FRAMES
    assert got[-1]["code"] == "ws.too_many_frames"
    # Each allowed frame costs at most one replay (resumes are coalesced) or one pong; the frames allowed
    # are the burst plus the refill over however long this took (a slow machine is allowed more).
    allowed = FRAME_BURST + FRAME_RATE * (time.monotonic() - started) + 1
    replies = [f for f in got if "event_id" in f or f.get("type") == "pong"]
    assert len(replies) <= allowed * (visible if kind == "resume" else 1)
