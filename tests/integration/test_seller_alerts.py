"""The seller-alerts job: a shop crossing a threshold is announced once per crossing (seller.alert_raised),
the alert clears when the figure is back under, and a new crossing raises again. Rows are written
directly in 2032, a year no other test writes in, and the job is run with a clock set there."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.orders.models import Order
from app.reports import alerts
from app.reports.models import SellerAlert
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.factories import make_settings
from tests.factories import report_order as order
from tests.factories import report_refund as refund
from tests.factories import report_shop as shop
from tests.factories import run_in_transaction as run

NOW = datetime(2032, 1, 31, tzinfo=UTC)
DAY = timedelta(days=1)


def test_an_alert_is_raised_once_per_crossing_cleared_and_raised_again(db_url: str) -> None:
    settings = make_settings(db_url)
    endpoint_id = f"whe_{uuid.uuid4().hex}"

    async def setup(session: AsyncSession) -> tuple[str, list[str]]:
        session.add(
            WebhookEndpoint(
                id=endpoint_id,
                url="https://example.test/hook",
                event_types=["seller.alert_raised"],
                secret="s" * 32,
                created_by="test",
            )
        )
        seller_id = shop(session)
        await session.flush()
        orders = [order(session, seller_id, NOW - 3 * DAY + i * timedelta(minutes=1)) for i in range(10)]
        refund(session, orders[0], NOW - 2 * DAY)  # 1 of 10 orders refunded: 0.1 > 0.08
        await session.flush()
        return seller_id, orders

    seller_id, orders = run(db_url, setup)

    def evaluate(now: datetime) -> int:
        async def work(session: AsyncSession) -> int:
            return await alerts.evaluate(session, settings=settings, now=now)

        return run(db_url, work)

    def state() -> tuple[list[tuple[str, bool]], list[dict[str, object]]]:
        async def work(session: AsyncSession) -> tuple[list[tuple[str, bool]], list[dict[str, object]]]:
            rows = await session.scalars(
                select(SellerAlert).where(SellerAlert.seller_id == seller_id).order_by(SellerAlert.raised_at)
            )
            sent = await session.scalars(
                select(WebhookDelivery.payload)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.created_at)
            )
            return [(r.metric, r.cleared_at is None) for r in rows], [json.loads(p)["data"] for p in sent]

        return run(db_url, work)

    assert evaluate(NOW) == 1
    assert evaluate(NOW + timedelta(minutes=15)) == 0  # the same crossing: nothing new
    raised, sent = state()
    assert raised == [("refund_rate", True)]
    assert [(d["seller_id"], d["metric"], d["value"], d["threshold"], d["orders"]) for d in sent] == [
        (seller_id, "refund_rate", 0.1, 0.08, 10)
    ]

    # Three more orders: 1 of 13 is 0.076923, back under 0.08: cleared, nothing announced.
    run(db_url, lambda s: _more_orders(s, seller_id, 3))
    assert evaluate(NOW + 2 * timedelta(minutes=15)) == 0
    assert state() == ([("refund_rate", False)], sent)

    # A second refunded order: 2 of 13 (0.153846), a new crossing, announced again.
    run(db_url, lambda s: _refund(s, orders[1]))
    assert evaluate(NOW + 3 * timedelta(minutes=15)) == 1
    raised, sent = state()
    assert raised == [("refund_rate", False), ("refund_rate", True)]
    assert [(d["metric"], d["value"], d["orders"]) for d in sent] == [
        ("refund_rate", 0.1, 10),
        ("refund_rate", 0.153846, 13),
    ]


def test_a_shop_under_ten_orders_raises_nothing(db_url: str) -> None:
    async def setup(session: AsyncSession) -> str:
        seller_id = shop(session)
        await session.flush()
        for i in range(9):
            refund(session, order(session, seller_id, NOW - 4 * DAY + i * timedelta(minutes=1)), NOW - DAY)
        await session.flush()
        return seller_id

    seller_id = run(db_url, setup)

    async def work(session: AsyncSession) -> list[str]:
        await alerts.evaluate(session, settings=make_settings(db_url), now=NOW + timedelta(hours=1))
        return list(await session.scalars(select(SellerAlert.metric).where(SellerAlert.seller_id == seller_id)))

    assert run(db_url, work) == []  # every order refunded, but 9 orders are too few to judge


async def _more_orders(session: AsyncSession, seller_id: str, count: int) -> None:
    for i in range(count):
        order(session, seller_id, NOW - 3 * DAY + timedelta(hours=1, minutes=i))
    await session.flush()


async def _refund(session: AsyncSession, order_id: str) -> None:
    placed = await session.get(Order, order_id)
    assert placed is not None
    refund(session, order_id, NOW - DAY, seller_id=placed.seller_id, order_created_at=placed.created_at)
    await session.flush()
