"""``refund.updated`` is appended to the event log at the grant and with each outcome the worker records
(paid, refused), with the order's parties as its policy attributes — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import select

from app.db import create_engine
from app.events.models import Event
from app.payouts.gateway import PaymentProviderError
from app.settings import Settings
from tests.factories import Case, Tokens, World, grant, money, pay
from tests.fakes import FakeEscrow


def logged(settings: Settings, refund_id: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Event.resource_kind, Event.buyer_id, Event.seller_id, Event.recipient, Event.payload)
                    .where(Event.type == "refund.updated", Event.payload.contains(refund_id))
                    .order_by(Event.id)
                )
                return list(rows.all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_worker_records_refund_updated_with_each_outcome(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    case = Case(client, auth, world)
    escrow = FakeEscrow()
    paid = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(700), funded_by="operator"
    )
    refused = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(800), funded_by="operator"
    )
    escrow.fail_for[refused["refund_id"]] = [PaymentProviderError("card expired", code="expired_card", transient=False)]
    pay(settings, escrow)

    for refund, outcome in ((paid, "succeeded"), (refused, "failed")):
        rows = logged(settings, refund["refund_id"])
        assert {(r.resource_kind, r.buyer_id, r.seller_id, r.recipient) for r in rows} == {
            ("order", case.buyer_id, case.shop, None)
        }
        assert [json.loads(r.payload)["status"] for r in rows] == ["pending", outcome]
        now = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
        assert json.loads(rows[-1].payload) == now
