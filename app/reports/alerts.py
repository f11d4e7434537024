"""The ``seller-alerts`` worker job: each active shop's scorecard over the last 30 days, and the outbound
webhook ``seller.alert_raised`` once per crossing of a threshold (docs/webhooks.md).

Only shops with orders in the window (at least ``SAV_ALERT_MIN_ORDERS`` of them: fewer raise nothing)
and shops with a raised alert (to clear it) are evaluated, every shop's figures by the same grouped
queries of ``kpis.py``; the job runs every ``SAV_SELLER_ALERTS_EVERY_SECONDS``. A raised alert is a row of
``seller_alerts``; when the figure is back at or under its threshold the row is cleared, and a later
crossing raises (and announces) again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect_insert, utcnow
from app.reports import kpis
from app.reports.kpis import Window
from app.reports.metrics import DEFAULT_DAYS, Rates, alerts_of
from app.reports.models import SellerAlert
from app.settings import Settings
from app.webhooks import service as webhooks

EVENT_TYPE = "seller.alert_raised"


async def shop_rates(session: AsyncSession, window: Window, now: datetime, min_orders: int) -> dict[str, Rates]:
    """The alert figures of every shop with at least ``min_orders`` orders in the window."""
    orders = {
        row.seller_id: row.orders
        for row in await session.execute(kpis.order_counts(window, per_shop=True).having(func.count() >= min_orders))
    }
    if not orders:
        return {}
    returns: dict[str, int] = {
        row.seller_id: row.returns for row in await session.execute(kpis.dispute_counts(window, now, per_shop=True))
    }
    refunded = dict((await session.execute(kpis.orders_refunded(window, per_shop=True))).tuples().all())
    defective = dict((await session.execute(kpis.orders_defective(window, per_shop=True))).tuples().all())
    p90: dict[str, Any] = {
        row.seller_id: row.first_response_p90
        for row in await session.execute(
            kpis.duration_percentiles(window, dialect=session.get_bind().dialect.name, per_shop=True)
        )
    }
    return {
        shop: Rates(
            orders=n,
            return_rate=kpis.ratio(returns.get(shop, 0), n),
            refund_rate=kpis.ratio(refunded.get(shop, 0), n),
            defect_rate=kpis.ratio(defective.get(shop, 0), n),
            first_response_p90=None if p90.get(shop) is None else round(float(p90[shop]), 3),
        )
        for shop, n in orders.items()
    }


async def evaluate(session: AsyncSession, *, settings: Settings, now: datetime | None = None) -> int:
    """One pass; returns how many alerts were raised."""
    now = now or utcnow()
    window = Window(start=now - timedelta(days=DEFAULT_DAYS), end=now)
    rates = await shop_rates(session, window, now, settings.alert_min_orders)
    above = {shop: {a.metric: a for a in alerts_of(r, settings)} for shop, r in rates.items()}
    raised_rows = (await session.execute(select(SellerAlert).where(SellerAlert.cleared_at.is_(None)))).scalars()
    for row in raised_rows:
        if row.metric not in above.get(row.seller_id, {}):
            row.cleared_at = now
    raised = 0
    connection = await session.connection()
    for shop, alerts in sorted(above.items()):
        for metric, alert in sorted(alerts.items()):
            statement = (
                dialect_insert(connection.dialect.name, SellerAlert.__table__)
                .values(
                    id=f"sal_{uuid.uuid4().hex}",
                    seller_id=shop,
                    metric=metric,
                    value=alert.value,
                    threshold=alert.threshold,
                    raised_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=["seller_id", "metric"], index_where=SellerAlert.cleared_at.is_(None)
                )
                .returning(SellerAlert.id)
            )
            alert_id = (await session.execute(statement)).scalar_one_or_none()
            if alert_id is None:
                continue  # already raised for this crossing
            raised += 1
            await webhooks.enqueue(
                session,
                event_type=EVENT_TYPE,
                data={
                    "alert_id": alert_id,
                    "seller_id": shop,
                    "metric": metric,
                    "value": alert.value,
                    "threshold": alert.threshold,
                    "from": window.start.isoformat(),
                    "to": window.end.isoformat(),
                    "orders": rates[shop].orders,
                },
                now=now,
            )
    await session.flush()
    return raised
