"""Fan-out across processes through a real broker, and back-pressure on a slow consumer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.databases import create_pg_database, migrate
from tests.e2e.helpers import Service, drain, next_events, open_socket, open_thread, post, put, read_until_closed
from tests.factories import Tokens, make_settings, order_body, uid

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_pg(pg_admin_url: str) -> Iterator[str]:
    url, drop = create_pg_database(pg_admin_url, prefix="sav_e2e")
    migrate(url)
    yield url
    drop()


def _world(service: Service, auth: Tokens) -> dict[str, Any]:
    with service.client() as http:
        shop, buyer, order = uid("shop"), uid("buyer"), uid("ord")
        put(http, f"/v1/sellers/{shop}", {"name": shop}, auth.marketplace)
        put(http, f"/v1/orders/{order}", order_body(buyer, shop), auth.marketplace)
    return {
        "buyer": auth("buyer", buyer),
        "seller": auth("seller", uid("m"), seller_id=shop),
        "stranger": auth("buyer"),
        "order": order,
    }


@pytest.mark.parametrize("broker", ["redis", "postgresql"])
def test_a_message_posted_through_one_process_reaches_a_client_of_another(
    shared_pg: str, tmp_path_factory: pytest.TempPathFactory, broker: str
) -> None:
    channels = (
        "redis://127.0.0.1:6379/0" if broker == "redis" else shared_pg.replace("postgresql+psycopg://", "postgresql://")
    )
    tmp = tmp_path_factory.mktemp(broker)
    # A long poll interval: delivery within the test's timeout can only come through the broker.
    a = Service(shared_pg, tmp, SAV_CHANNELS_URL=channels, SAV_WORKER_POLL_SECONDS="30")
    b = Service(shared_pg, tmp, SAV_CHANNELS_URL=channels, SAV_WORKER_POLL_SECONDS="30")
    auth = Tokens(make_settings(shared_pg))
    try:
        w = _world(a, auth)

        async def scenario() -> None:
            on_b = await open_socket(b, w["seller"])
            stranger_on_b = await open_socket(b, w["stranger"])
            try:
                thread = await asyncio.to_thread(
                    open_thread, a, w["buyer"], audience="buyer_seller", order_id=w["order"]
                )
                message = await asyncio.to_thread(post, a, w["buyer"], thread["thread_id"], f"via {broker}")
                received = await next_events(on_b, 3, timeout=10)
                assert [e["type"] for e in received] == ["thread.created", "message.created", "message.created"]
                assert received[-1]["data"] == message
                assert await drain(stranger_on_b) == []
            finally:
                await on_b.close()
                await stranger_on_b.close()

        asyncio.run(scenario())
    finally:
        a.stop()
        b.stop()


def post_many(service: Service, headers: dict[str, str], thread: dict[str, Any], count: int) -> list[str]:
    body = "x" * 9_990
    posted = []
    with service.client() as http:
        for i in range(count):
            response = http.post(
                f"/v1/threads/{thread['thread_id']}/messages", json={"body": f"{i} {body}"}, headers=headers
            )
            assert response.status_code == 201, response.text
            posted.append(response.json()["message_id"])
    return posted


BATCH = 50  # well under the queue size (100) the service below runs with


def test_a_slow_consumer_is_closed_and_then_resumes_completely(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = Service(db_url, tmp_path_factory.mktemp("slow"), SAV_WS_QUEUE_SIZE="100")
    auth = Tokens(make_settings(db_url))
    try:
        w = _world(service, auth)
        thread = open_thread(service, w["buyer"], audience="tripartite", order_id=w["order"])

        async def scenario() -> None:
            # A client that reads nothing while 600 large messages are posted: a tiny receive buffer and
            # a one-message queue, so the server's writes back up and its bounded queue (100) overflows.
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", service.port))
            slow = await connect(
                f"{service.ws_url}?token={w['seller']['Authorization'][7:]}", sock=raw, max_queue=1, compression=None
            )
            watcher = await open_socket(service, w["buyer"])
            try:
                # Other clients are not held back by the slow one: the watcher sees every message live. The
                # next batch is posted once the watcher has this one, so the watcher (a normal client, with the
                # same queue size) never falls SAV_WS_QUEUE_SIZE behind however loaded the machine is, while
                # the slow one, which reads nothing, overflows its queue all the same.
                posted: list[str] = []
                seen: list[str] = []
                for _ in range(600 // BATCH):
                    batch = await asyncio.to_thread(post_many, service, w["seller"], thread, BATCH)
                    posted += batch
                    while not seen or seen[-1] != batch[-1]:
                        seen += [
                            e["data"]["message_id"]
                            for e in await next_events(watcher, 1, timeout=10)
                            if e["type"] == "message.created"
                        ]
                assert seen[-len(posted) :] == posted

                got, close_code = await read_until_closed(slow)
                assert close_code == 4429, f"{len(got)} frames then {close_code}"
                have = [e["data"]["message_id"] for e in got if e.get("type") == "message.created"]
                assert 0 < len(have) < len(posted)
                last = max(e["event_id"] for e in got if "event_id" in e)

                resumed = await open_socket(service, w["seller"], resume=last)
                try:
                    rest = [e for e in await drain(resumed, quiet=2) if e["type"] == "message.created"]
                finally:
                    await resumed.close()
                have += [e["data"]["message_id"] for e in rest]
                assert [m for m in have if m in set(posted)] == posted
            finally:
                await watcher.close()
                await slow.close()

        asyncio.run(scenario())
    finally:
        service.stop()
