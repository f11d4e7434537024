"""What the payouts domain tells others about an order's compensation, read under the order's lock."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import noload

from app.orders.models import Order
from app.payouts.models import Refund
from app.payouts.rules import Split
from app.payouts.schemas import RefundStatus


async def lock_order(session: AsyncSession, order_id: str) -> Order | None:
    """The order's row, locked until the transaction ends. Every grant of compensation on an order (and
    every dispute action that commits money) takes it before reading what the order has refunded, so the
    cap and the per-order limits are checked one request at a time."""
    return await session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .options(noload(Order.lines))  # the money is in the ledger; the lines are not needed here
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def compensation_on_order(session: AsyncSession, *, order_id: str, currency: str) -> Split:
    """Who pays the compensation granted on an order so far, every kind (refunds, credit notes, promo
    codes), pending or succeeded: a failed refund gave the buyer nothing, so it uses no budget."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Refund.seller_amount), 0),
                func.coalesce(func.sum(Refund.operator_amount), 0),
                func.coalesce(func.sum(Refund.bonus_amount), 0),
            ).where(Refund.order_id == order_id, Refund.currency == currency, Refund.status != RefundStatus.FAILED)
        )
    ).one()
    return Split(seller=int(row[0]), operator=int(row[1]), bonus=int(row[2]))
