"""What a payout tells the world: ``payout.paid`` / ``payout.failed`` to the marketplace's webhook
endpoints (outbox, in the transaction of the outcome, one event per outcome) and ``payout.updated`` on
the WebSocket with every change. The event is recorded as a ``payout`` of its shop: the policy lets the
shop's members, finance and admins read it (app/permissions/policy.csv), and the hub asks the policy."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import service as events
from app.money import Money
from app.payouts.models import Payout
from app.payouts.schemas import PayoutRead
from app.webhooks import service as webhooks

EVENT_TYPE = "payout.updated"
ANNOUNCED = frozenset({"paid", "failed"})


def read(payout: Payout) -> PayoutRead:
    return PayoutRead(
        payout_id=payout.id,
        seller_id=payout.seller_id,
        order_id=payout.order_id,
        amount=Money(payout.amount, payout.currency),
        debt_netted=Money(payout.debt_netted, payout.currency),
        reversed=Money(payout.reversed, payout.currency),
        status=payout.status,  # type: ignore[arg-type]
        provider_ref=payout.provider_ref,
        failure_reason=payout.failure_reason,
        created_at=payout.created_at,
        paid_at=payout.paid_at,
    )


async def announce(session: AsyncSession, payout: Payout, now: datetime, *, webhook: bool = True) -> None:
    """``webhook=False``: the WebSocket only (a reversal changed the payout, not its status)."""
    data = read(payout)
    await events.append(
        session,
        type=EVENT_TYPE,
        kind="payout",
        buyer_id=None,
        seller_id=payout.seller_id,
        thread_id=None,
        actor="system",
        payload=data,
        now=now,
    )
    if webhook and payout.status in ANNOUNCED:
        event_id = f"evt_{uuid.uuid5(uuid.NAMESPACE_URL, f'sav:{payout.id}:{payout.status}').hex}"
        await webhooks.enqueue(
            session, event_type=f"payout.{payout.status}", event_id=event_id, data=msgspec.to_builtins(data), now=now
        )
