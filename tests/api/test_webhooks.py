"""Outbound webhooks: endpoints (admin only), the outbox written with the change, signed deliveries
to a real HTTP receiver, retries with their attempt log, expiry after 24 h, one send per delivery
even with two workers, nothing for a rolled-back change — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine, utcnow
from app.settings import Settings
from app.webhooks import service as webhooks
from app.webhooks.models import WebhookDelivery
from app.webhooks.signing import verify
from tests.factories import Case, Receiver, Tokens, World, deactivate_all, subscribe, uid


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def admin(auth: Tokens) -> dict[str, str]:
    return auth("admin", uid("admin"))


def run_deliveries(settings: Settings, *, now_offset: timedelta = timedelta(0), workers: int = 1) -> int:
    async def passes() -> int:
        engines = [create_engine(settings.database_url) for _ in range(workers)]
        try:
            makers = [async_sessionmaker(e, expire_on_commit=False) for e in engines]
            policy = webhooks.Policy.from_settings(settings)  # the receiver is local: allowed by the suite
            done = await asyncio.gather(
                *(webhooks.deliver_due(m, now=utcnow() + now_offset, policy=policy) for m in makers)
            )
            return sum(done)
        finally:
            for engine in engines:
                await engine.dispose()

    return asyncio.run(passes())


def test_only_admins_manage_endpoints_and_bad_input_is_refused(
    client: TestClient[Any], auth: Tokens, admin: dict[str, str]
) -> None:
    body = {"url": "https://marketplace.example/hooks", "event_types": ["dispute.opened"]}
    for role in ("agent", "arbitrator", "finance", "marketplace", "buyer"):
        assert client.post("/v1/webhook-endpoints", json=body, headers=auth(role)).status_code == 403
    assert client.get("/v1/webhook-endpoints", headers=auth("agent")).status_code == 403
    bad_url = client.post("/v1/webhook-endpoints", json={**body, "url": "ftp://x/y"}, headers=admin)
    assert (bad_url.status_code, bad_url.json()["errors"][0]["field"]) == (400, "url")
    bad_type = client.post("/v1/webhook-endpoints", json={**body, "event_types": ["dispute.exploded"]}, headers=admin)
    assert bad_type.status_code == 400
    assert client.post("/v1/webhook-endpoints", json={**body, "event_types": []}, headers=admin).status_code == 400

    created = client.post("/v1/webhook-endpoints", json=body, headers=admin).json()
    assert len(created["secret"]) >= 32
    shown = client.get(f"/v1/webhook-endpoints/{created['endpoint_id']}", headers=admin).json()
    assert "secret" not in shown
    assert client.get("/v1/webhook-endpoints/whe_nope", headers=admin).status_code == 404
    assert client.delete(f"/v1/webhook-endpoints/{created['endpoint_id']}", headers=admin).status_code == 204
    assert client.get(f"/v1/webhook-endpoints/{created['endpoint_id']}", headers=admin).json()["active"] is False


def test_dispute_transitions_are_delivered_signed(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    deactivate_all(client, admin)
    endpoint = subscribe(client, admin, receiver.url, ["dispute.opened", "dispute.escalated", "dispute.closed"])
    case = Case(client, auth, world)
    case.open()
    case.act(case.buyer, "escalate", note="no answer")
    case.act(case.buyer, "withdraw")
    assert run_deliveries(settings) == 3
    types = [json.loads(r["body"])["type"] for r in receiver.received]
    assert sorted(types) == ["dispute.closed", "dispute.escalated", "dispute.opened"]
    for request in receiver.received:
        assert verify(endpoint["secret"], request["headers"]["Sav-Signature"], request["body"])
        event = json.loads(request["body"])
        assert request["headers"]["Sav-Event-Id"] == event["id"]
        assert event["data"]["dispute_id"] == case.dispute["dispute_id"]
    log = client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=admin).json()["items"]
    assert [d["status"] for d in log] == ["succeeded"] * 3
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in log)
    assert run_deliveries(settings) == 0  # nothing is sent twice
    deactivate_all(client, admin)


def test_receiver_errors_are_retried_with_backoff_then_expire(
    client: TestClient[Any], settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    deactivate_all(client, admin)
    endpoint = subscribe(client, admin, receiver.url, ["*"])
    engine_url = settings.database_url

    async def enqueue_one(event_type: str) -> None:
        engine = create_engine(engine_url)
        try:
            async with async_sessionmaker(engine)() as session, session.begin():
                assert await webhooks.enqueue(session, event_type=event_type, data={"n": 1}) == 1
        finally:
            await engine.dispose()

    asyncio.run(enqueue_one("refund.failed"))
    receiver.fail_next = 2
    assert run_deliveries(settings) == 1  # 503
    assert run_deliveries(settings) == 0  # not due yet: backoff
    assert run_deliveries(settings, now_offset=timedelta(seconds=40)) == 1  # 503 again
    assert run_deliveries(settings, now_offset=timedelta(minutes=5)) == 1  # 200
    [delivery] = client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=admin).json()[
        "items"
    ]
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 200]
    assert len(receiver.received) == 3
    assert len({r["headers"]["Sav-Event-Id"] for r in receiver.received}) == 1  # same event id on retries

    # A receiver that keeps failing: the delivery ends failed once its next retry would pass 24 h.
    asyncio.run(enqueue_one("refund.succeeded"))
    receiver.fail_next = 100
    assert run_deliveries(settings) == 1
    assert run_deliveries(settings, now_offset=timedelta(hours=23, minutes=59, seconds=50)) == 1
    log = client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=admin).json()["items"]
    assert log[0]["status"] == "failed"
    assert log[0]["next_attempt_at"] is None
    assert run_deliveries(settings, now_offset=timedelta(days=2)) == 0
    deactivate_all(client, admin)


def test_a_rolled_back_change_sends_nothing_and_two_workers_send_once(
    client: TestClient[Any], settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    deactivate_all(client, admin)
    subscribe(client, admin, receiver.url, ["dispute.updated"])

    async def scenario() -> None:
        engine = create_engine(settings.database_url)
        try:
            maker = async_sessionmaker(engine)

            async def failing_change() -> None:
                async with maker() as session, session.begin():
                    await webhooks.enqueue(session, event_type="dispute.updated", data={"rolled": "back"})
                    raise RuntimeError("the change failed")

            with pytest.raises(RuntimeError):
                await failing_change()
            async with maker() as session, session.begin():
                for n in range(10):
                    await webhooks.enqueue(session, event_type="dispute.updated", data={"n": n})
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert run_deliveries(settings, workers=2) == 10
    bodies = [json.loads(r["body"])["data"] for r in receiver.received]
    assert sorted(b["n"] for b in bodies) == list(range(10))
    assert {"rolled": "back"} not in bodies
    deactivate_all(client, admin)


def test_a_crashed_worker_loses_nothing(
    client: TestClient[Any], settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    """A worker that claimed deliveries and died before sending: after the lease they are due again."""
    deactivate_all(client, admin)
    endpoint = subscribe(client, admin, receiver.url, ["dispute.updated"])

    async def claim_and_die() -> None:
        engine = create_engine(settings.database_url)
        try:
            maker = async_sessionmaker(engine, expire_on_commit=False)
            async with maker() as session, session.begin():
                await webhooks.enqueue(session, event_type="dispute.updated", data={"crash": True})
            claimed = await webhooks.claim_due(maker, now=utcnow())
            assert len(claimed) == 1  # ... and the process dies here
            async with maker() as session, session.begin():
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.endpoint_id == endpoint["endpoint_id"])
                    .values(created_at=utcnow())
                )
        finally:
            await engine.dispose()

    asyncio.run(claim_and_die())
    assert run_deliveries(settings) == 0  # leased
    assert run_deliveries(settings, now_offset=webhooks.LEASE + timedelta(seconds=1)) == 1
    [delivery] = client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=admin).json()[
        "items"
    ]
    assert delivery["status"] == "succeeded"
    assert [a["number"] for a in delivery["attempts"]] == [2]
    deactivate_all(client, admin)
