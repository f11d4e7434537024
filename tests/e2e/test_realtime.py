"""Real time (docs/api.md), end to end: delivery, visibility, order, resume, bad tokens, slow
consumers — a real uvicorn process, real `websockets` clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.helpers import Service, drain, next_events, nothing_more, open_socket, open_thread, post, put, token_of
from tests.factories import Tokens, order_body, uid

pytestmark = pytest.mark.slow


@pytest.fixture
def shop_world(service: Service, auth: Tokens) -> dict[str, Any]:
    with service.client() as http:
        shop, other_shop = uid("shop"), uid("shop")
        for s in (shop, other_shop):
            put(http, f"/v1/sellers/{s}", {"name": s}, auth.marketplace)
        buyer = uid("buyer")
        order = uid("ord")
        put(http, f"/v1/orders/{order}", order_body(buyer, shop), auth.marketplace)
    return {
        "buyer": auth("buyer", buyer, name="Camille"),
        "other_buyer": auth("buyer"),
        "seller": auth("seller", uid("m"), seller_id=shop),
        "other_seller": auth("seller", uid("m"), seller_id=other_shop),
        "agent": auth("agent"),
        "finance": auth("finance"),
        "order": order,
    }


async def test_a_message_reaches_exactly_the_parties_who_may_see_it(
    service: Service, shop_world: dict[str, Any]
) -> None:
    w = shop_world
    sockets = {
        name: await open_socket(service, w[name])
        for name in ("buyer", "seller", "agent", "other_buyer", "other_seller", "finance")
    }
    try:
        thread = await asyncio.to_thread(open_thread, service, w["buyer"], audience="buyer_seller", order_id=w["order"])
        message = await asyncio.to_thread(post, service, w["seller"], thread["thread_id"], "Shipped!")
        for name in ("buyer", "seller", "agent"):
            received = await next_events(sockets[name], 3)
            assert [e["type"] for e in received] == ["thread.created", "message.created", "message.created"]
            ids = [e["event_id"] for e in received]
            assert ids == sorted(ids)
            assert len(set(ids)) == 3
            assert received[2]["data"] == message
            assert received[0]["data"]["thread_id"] == thread["thread_id"]
        # The opener's own new thread is not unread for it; it is for the seller.
        assert (await asyncio.sleep(0)) is None
        for name in ("other_buyer", "other_seller", "finance"):
            assert await nothing_more(sockets[name]), name
    finally:
        for ws in sockets.values():
            await ws.close()


async def test_private_thread_events_stay_private(service: Service, shop_world: dict[str, Any]) -> None:
    w = shop_world
    buyer_ws = await open_socket(service, w["buyer"])
    seller_ws = await open_socket(service, w["seller"])
    try:
        thread = await asyncio.to_thread(
            open_thread, service, w["agent"], audience="operator_seller", order_id=w["order"]
        )
        received = await next_events(seller_ws, 2)
        assert received[0]["data"]["unread_count"] == 1
        assert await nothing_more(buyer_ws)
        internal = await asyncio.to_thread(open_thread, service, w["agent"], audience="internal", order_id=w["order"])
        assert internal["audience"] == "internal"
        assert await nothing_more(seller_ws)
        assert await nothing_more(buyer_ws)
        assert thread["audience"] == "operator_seller"
    finally:
        await buyer_ws.close()
        await seller_ws.close()


@pytest.mark.parametrize("resume_in_url", [False, True], ids=["resume-frame", "resume-in-url"])
async def test_resume_replays_what_was_missed_then_goes_live_without_gap_or_duplicate(
    service: Service, shop_world: dict[str, Any], resume_in_url: bool
) -> None:
    w = shop_world
    thread = await asyncio.to_thread(open_thread, service, w["buyer"], audience="tripartite", order_id=w["order"])
    ws = await open_socket(service, w["buyer"])
    await asyncio.to_thread(post, service, w["seller"], thread["thread_id"], "one")
    first: dict[str, Any] = {}
    while first.get("data", {}).get("body") != "one":  # events of the opening may still arrive first
        first = (await next_events(ws, 1))[0]
    await ws.close()

    # Offline: three messages.
    for text in ("two", "three", "four"):
        await asyncio.to_thread(post, service, w["seller"], thread["thread_id"], text)

    ws = await open_socket(service, w["buyer"], resume=first["event_id"], resume_in_url=resume_in_url)
    try:
        # And one more while the replay is happening.
        live = asyncio.create_task(asyncio.to_thread(post, service, w["seller"], thread["thread_id"], "five"))
        received = await next_events(ws, 4)
        await live
        received += await next_events(ws, 0)
        bodies = [e["data"]["body"] for e in received]
        assert bodies == ["two", "three", "four", "five"]
        ids = [e["event_id"] for e in received]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        assert ids[0] > first["event_id"]
        assert await nothing_more(ws)
    finally:
        await ws.close()


async def test_resume_from_zero_replays_only_visible_events(service: Service, shop_world: dict[str, Any]) -> None:
    w = shop_world
    await asyncio.to_thread(open_thread, service, w["agent"], audience="internal", order_id=w["order"])
    visible = await asyncio.to_thread(open_thread, service, w["buyer"], audience="operator_buyer")
    ws = await open_socket(service, w["other_buyer"], resume=0)
    try:
        assert await nothing_more(ws)
    finally:
        await ws.close()
    ws = await open_socket(service, w["buyer"], resume=0)
    try:
        received = await next_events(ws, 2)
        assert {e["data"]["thread_id"] for e in received} == {visible["thread_id"]}
        assert received[0]["data"]["unread_count"] == 0  # the buyer opened it
    finally:
        await ws.close()


async def test_read_events_go_to_the_reader_only(service: Service, shop_world: dict[str, Any]) -> None:
    w = shop_world
    buyer_ws = await open_socket(service, w["buyer"])
    seller_ws = await open_socket(service, w["seller"])
    thread = await asyncio.to_thread(open_thread, service, w["seller"], audience="buyer_seller", order_id=w["order"])
    assert len(await drain(buyer_ws)) == 2
    assert len(await drain(seller_ws)) == 2
    try:
        with service.client() as http:
            response = http.post(
                f"/v1/threads/{thread['thread_id']}/read",
                json={"message_id": thread["first_message"]["message_id"]},
                headers=w["buyer"],
            )
            assert response.status_code == 204
        event = (await next_events(buyer_ws, 1))[0]
        assert event["type"] == "thread.read"
        assert event["data"]["unread_count"] == 0
        assert await nothing_more(seller_ws)
    finally:
        await buyer_ws.close()
        await seller_ws.close()


@pytest.mark.parametrize("token", ["not-a-jwt", ""])
async def test_bad_tokens_are_closed_with_4401(service: Service, token: str) -> None:
    async with connect(f"{service.ws_url}?token={token}") as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert error["code"] == "auth.invalid_token"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401


async def test_auth_by_first_frame(service: Service, shop_world: dict[str, Any]) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token_of(shop_world["buyer"])}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 2))["type"] == "ready"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"type": "pong"}
    async with connect(service.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "forged"}))
        await asyncio.wait_for(ws.recv(), 2)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)


def test_plain_http_get_on_the_socket_path_is_refused(service: Service) -> None:
    assert httpx.get(service.url + "/v1/ws").status_code in (400, 404, 405, 426)


async def test_a_malformed_after_event_id_is_answered_with_an_error(
    service: Service, shop_world: dict[str, Any]
) -> None:
    ws = await connect(f"{service.ws_url}?token={token_of(shop_world['buyer'])}&after_event_id=abc")
    try:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ready"
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (error["type"], error["code"]) == ("error", "validation_error")
        assert "after_event_id" in error["detail"]
    finally:
        await ws.close()
