"""``refund.updated`` on the WebSocket: appended with every grant and status change of a refund.

Who receives it is who may read the refund, i.e. the order (its buyer and shop, operator staff, finance,
the marketplace): the event is recorded with the order's policy attributes and the hub asks the policy,
as for every other event. ``data`` is the refund as ``GET /v1/refunds/{id}`` returns it to the reader:
it is stored whole and :func:`as_seen_by` takes out what the policy keeps from a reader (a promo code from
a shop, who funds it from the buyer: app/permissions/disclosure.py), as the REST read does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.events import service as events
from app.orders.models import Order
from app.payouts.schemas import RefundRead
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed

EVENT_TYPE = "refund.updated"


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


def as_seen_by(actor: Actor, data: dict[str, Any], resource: Resource) -> dict[str, Any] | None:
    """The event's data for this reader, or None when it may see it as stored. ``resource`` carries the
    order's buyer and shop."""
    hidden: dict[str, Any] = {}
    if data.get("promo_code") is not None and not is_allowed(
        actor, Resource(kind="promo_code", buyer_id=resource.buyer_id, seller_id=resource.seller_id), "read"
    ):
        hidden["promo_code"] = None
    if not disclosure.view_of(actor, buyer_id=resource.buyer_id, seller_id=resource.seller_id).funding:
        hidden.update(funded_by=None, seller_share=None)
    return {**data, **hidden} if hidden else None
