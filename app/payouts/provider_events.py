"""Provider webhook events as finance sees them: every event received is kept with what came of it.

A signed event is still input. One whose content does not fit what we know (an amount that is not a
positive integer, another currency than the order's, another charge, another amount than the refund it
names) is ``rejected``: it moves no money, it is answered 2xx so the provider stops retrying, and finance
reads it (``GET /v1/provider-events?status=rejected``) to settle it by hand with the provider.

The rules are pure functions here; ``settlement.apply_provider_event`` calls them before any money moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect_insert
from app.money import Money
from app.paging import next_cursor, older_than, window
from app.payouts.gateway import ProviderEvent, ProviderRefund
from app.payouts.models import ProviderEventRecord
from app.payouts.schemas import ProviderEventRead, ProviderEventStatus
from app.schemas import Page

Status = Literal["applied", "ignored", "rejected"]

# Stable reasons, for finance's filters and reports.
MALFORMED = "event.malformed"
CURRENCY_MISMATCH = "event.currency_mismatch"
CHARGE_MISMATCH = "event.charge_mismatch"
AMOUNT_MISMATCH = "event.amount_mismatch"
REFUND_MISMATCH = "event.refund_mismatch"
EXCEEDS_CHARGE = "event.exceeds_charge"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


def check_our_refund(
    found: ProviderRefund,
    *,
    event_charge_id: str | None,
    refund_amount: int,
    refund_currency: str,
    refund_provider_ref: str | None,
    order_charge_id: str,
) -> Rejection | None:
    """An event about a refund we made must be about that refund: the provider refund we recorded for
    it, its currency and amount, and our order's charge (when the event names a charge)."""
    if refund_provider_ref is not None and refund_provider_ref != found.id:
        return Rejection(
            REFUND_MISMATCH, f"our refund is {refund_provider_ref} at the provider, the event is {found.id}"
        )
    if found.currency != refund_currency:
        return Rejection(CURRENCY_MISMATCH, f"the event is in {found.currency}, our refund in {refund_currency}")
    if found.amount != refund_amount:
        return Rejection(AMOUNT_MISMATCH, f"the event says {found.amount}, our refund is {refund_amount}")
    if event_charge_id is not None and event_charge_id != order_charge_id:
        return Rejection(CHARGE_MISMATCH, f"the event is on charge {event_charge_id}, our order on {order_charge_id}")
    return None


def check_import(found: ProviderRefund, *, order_currency: str, order_total: int) -> Rejection | None:
    """A refund made at the provider directly, on one of our orders' charges: in the order's currency,
    and no more than the order's total (the provider never refunds more than a charge)."""
    if found.currency != order_currency:
        return Rejection(CURRENCY_MISMATCH, f"the event is in {found.currency}, the order in {order_currency}")
    if found.amount > order_total:
        return Rejection(EXCEEDS_CHARGE, f"the event refunds {found.amount}, the order's total is {order_total}")
    return None


async def claim(session: AsyncSession, event: ProviderEvent, now: datetime) -> bool:
    """Record the event once, with what it says. False if another delivery of it got here first (on
    PostgreSQL this waits for that delivery's transaction, then skips)."""
    found = event.refund
    inserted = await session.scalar(
        dialect_insert(session.get_bind().dialect.name, ProviderEventRecord)
        .values(
            id=event.id,
            type=event.type,
            received_at=now,
            status="ignored",
            provider_refund_id=found.id if found else None,
            charge_id=event.charge_id,
            amount=found.amount if found else None,
            currency=found.currency if found else None,
        )
        .on_conflict_do_nothing()
        .returning(ProviderEventRecord.id)
    )
    return inserted is not None


async def settle(
    session: AsyncSession,
    event: ProviderEvent,
    status: Status,
    *,
    rejection: Rejection | None = None,
    order_id: str | None = None,
    refund_id: str | None = None,
) -> Status:
    """What came of a claimed event: ``applied``, ``ignored`` (nothing of ours) or ``rejected``."""
    await session.execute(
        update(ProviderEventRecord)
        .where(ProviderEventRecord.id == event.id)
        .values(
            status=status,
            reason=rejection.reason if rejection else None,
            detail=_CONTROL.sub(" ", rejection.detail)[:500] if rejection else None,
            order_id=order_id,
            refund_id=refund_id,
        )
    )
    return status


async def list_provider_events(
    session: AsyncSession, *, status: str | None, limit: int, cursor: str | None
) -> Page[ProviderEventRead]:
    """Received events, newest first (finance and admins; the guard is the policy's)."""
    query = select(ProviderEventRecord)
    if status is not None:
        query = query.where(ProviderEventRecord.status == status)
    if cursor is not None:
        query = query.where(older_than(cursor, ProviderEventRecord.received_at, ProviderEventRecord.id))
    query = query.order_by(ProviderEventRecord.received_at.desc(), ProviderEventRecord.id.desc()).limit(limit + 1)
    rows, more = window((await session.scalars(query)).all(), limit)
    return Page(
        items=[_read(row) for row in rows],
        next_cursor=next_cursor(rows, more, lambda e: (e.received_at.isoformat(), e.id)),
    )


def _read(row: ProviderEventRecord) -> ProviderEventRead:
    amount = Money(row.amount, row.currency) if row.amount is not None and row.currency is not None else None
    return ProviderEventRead(
        event_id=row.id,
        type=row.type,
        status=cast("ProviderEventStatus", row.status),
        reason=row.reason,
        detail=row.detail,
        provider_refund_id=row.provider_refund_id,
        charge_id=row.charge_id,
        amount=amount,
        order_id=row.order_id,
        refund_id=row.refund_id,
        received_at=row.received_at,
    )
