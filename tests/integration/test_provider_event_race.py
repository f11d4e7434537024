"""Stripe sends several events about one dashboard refund at the same moment (``charge.refunded`` and
``refund.created``, different event ids): applied at once, they import the refund once and neither is a 500."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.db import create_engine
from app.payouts import settlement
from app.payouts.gateway import ProviderEvent, ProviderRefund
from app.payouts.models import Refund
from tests.factories import World


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> None:
    """Until another transaction of this database waits on a row lock (bounded: 20 s)."""
    for _ in range(400):
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second event never waited for the first one's order lock")


def test_two_events_about_one_dashboard_refund_at_once_import_it_once(
    db_url: str, client: TestClient[Any], world: World
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: the two events cannot overlap there")
    order = world.order()
    charge_id = order["payment"]["charge_id"]
    refund = ProviderRefund(id=f"re_{uuid.uuid4().hex[:14]}", status="succeeded", amount=700, currency="EUR")

    def event(kind: str) -> ProviderEvent:
        return ProviderEvent(
            id=f"evt_{uuid.uuid4().hex}", type=kind, refund=refund, charge_id=charge_id, our_refund_id=None
        )

    async def scenario() -> tuple[str, str, int]:
        engine = create_engine(db_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        async def apply_alone(provider_event: ProviderEvent) -> str:
            async with sessions() as session, session.begin():
                return await settlement.apply_provider_event(session, provider_event, on_settled=None)

        try:
            async with sessions() as first, first.begin():
                first_outcome = await settlement.apply_provider_event(first, event("charge.refunded"), on_settled=None)
                second = asyncio.create_task(apply_alone(event("refund.created")))
                await _someone_waits_on_a_lock(engine)  # the second event waits on the order's row lock
            second_outcome = await second
            async with sessions() as session:
                count = await session.scalar(
                    select(func.count()).select_from(Refund).where(Refund.provider_ref == refund.id)
                )
            return first_outcome, second_outcome, int(count or 0)
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == ("applied", "ignored", 1)
