"""``refund.updated`` on the WebSocket: appended with every grant and status change of a refund.

Who receives it is who may read the refund, i.e. the order (its buyer and shop, operator staff, finance,
the marketplace): the event is recorded with the order's policy attributes and the hub asks the policy,
as for every other event. ``data`` is the refund as ``GET /v1/refunds/{id}`` returns it to the reader:
it is stored whole and :func:`as_seen_by` takes out what a reader may not see (a promo code, for a shop).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Role
from app.events import service as events
from app.orders.models import Order
from app.payouts.schemas import RefundRead

EVENT_TYPE = "refund.updated"


def sees_promo_codes(actor: Actor) -> bool:
    """A promo code is a bearer secret of its buyer: shops never see it (REST and WebSocket alike)."""
    return actor.role != Role.SELLER


async def refund_updated(session: AsyncSession, refund: RefundRead) -> None:
    """Append the event in the caller's transaction; ``refund`` is read as its most entitled reader would."""
    parties = (await session.execute(select(Order.buyer_id, Order.seller_id).where(Order.id == refund.order_id))).one()
    await events.append(
        session,
        type=EVENT_TYPE,
        kind="order",
        buyer_id=parties.buyer_id,
        seller_id=parties.seller_id,
        thread_id=None,
        actor="system",
        payload=refund,
        now=refund.updated_at,
    )


def as_seen_by(actor: Actor, data: dict[str, Any]) -> dict[str, Any] | None:
    """The event's data for this reader, or None when it may see it as stored."""
    if data.get("promo_code") is not None and not sees_promo_codes(actor):
        return {**data, "promo_code": None}
    return None
