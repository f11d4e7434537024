"""Settling refunds: the worker pays what was granted through the payment gateway, once, and provider
webhooks settle (or import) what the provider decided.

Never paid twice: the refund row and its ``refund_issued`` ledger transaction commit before anything
is sent (app/payouts/refunds.py); the worker claims due refunds with a lease (``SKIP LOCKED``), calls the
provider with the refund id as idempotency key (a retry after a timeout or a crash gets the first answer
back), and records the outcome under the row lock (a ``refund_paid`` transaction has a unique reference).

When a refund settles, ``on_settled`` (wired by app/main.py: the disputes domain moves its dispute on)
runs in the same transaction; this module knows nothing of disputes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import outbox
from app.db import utcnow
from app.ledger import posting
from app.ledger.posting import TransactionKind
from app.ledger.postings import issue_entries, late_failure_entries, paid_entries, reversal_entries
from app.orders.models import Order
from app.payouts import provider_events, reallocation
from app.payouts.gateway import PaymentGateway, PaymentProviderError, ProviderEvent, ProviderRefund
from app.payouts.models import Refund
from app.payouts.reactions import RefundSettled
from app.payouts.refunds import announce
from app.payouts.schemas import RefundKind, RefundStatus

LEASE = timedelta(seconds=60)
# Stripe keeps idempotency keys 24 h: past that, a retry could pay a second time, so we stop before.
GIVE_UP_AFTER = timedelta(hours=23)
PENDING_RECHECK = timedelta(seconds=30)
BATCH = 50


# --- paying (the worker) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    refund_id: str
    attempt: int
    provider_ref: str | None
    charge_id: str
    payment_intent_id: str | None
    amount: int
    currency: str
    order_id: str
    dispute_id: str | None
    created_at: datetime


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, batch: int = BATCH, lease: timedelta = LEASE
) -> list[Claimed]:
    def take(row: Row[*tuple[Any, ...]]) -> Claimed:
        refund, charge_id, payment_intent_id = row
        return Claimed(
            refund_id=refund.id,
            attempt=refund.attempts,
            provider_ref=refund.provider_ref,
            charge_id=charge_id,
            payment_intent_id=payment_intent_id,
            amount=refund.amount,
            currency=refund.currency,
            order_id=refund.order_id,
            dispute_id=refund.dispute_id,
            created_at=refund.created_at,
        )

    query = select(Refund, Order.charge_id, Order.payment_intent_id).join(Order, Order.id == Refund.order_id)
    return await outbox.claim(sessions, query, table=Refund, now=now, batch=batch, lease=lease, take=take)


async def ask_provider(gateway: PaymentGateway, item: Claimed) -> ProviderRefund | PaymentProviderError:
    try:
        if item.provider_ref:
            return await gateway.retrieve_refund(item.provider_ref)
        return await gateway.refund(
            charge_id=item.charge_id,
            payment_intent_id=item.payment_intent_id,
            amount=item.amount,
            currency=item.currency,
            idempotency_key=item.refund_id,
            metadata={"refund_id": item.refund_id, "order_id": item.order_id, "dispute_id": item.dispute_id or ""},
        )
    except PaymentProviderError as exc:
        return exc


def _retry_in(attempt: int) -> timedelta:
    return outbox.backoff(attempt, first_seconds=10, max_seconds=1800)


Answered = tuple[Claimed, ProviderRefund | PaymentProviderError]


async def record(
    sessions: async_sessionmaker[AsyncSession],
    answered: list[Answered],
    *,
    now: datetime,
    on_settled: RefundSettled | None,
) -> list[str]:
    """Apply the provider's answers of one pass (in one transaction, or one by one if that fails: see
    ``outbox.record_outcomes``), under the refunds' row locks taken in id order, so two recorders never
    deadlock. Returns each refund's status after; a refund that could not be recorded stays pending, its
    lease expires, and the next pass asks the provider again with its key."""

    async def apply(session: AsyncSession, batch: list[Answered]) -> list[str]:
        by_id = await outbox.lock_rows(session, Refund, [item.refund_id for item, _ in batch])
        return [
            await _record_one(session, by_id.get(item.refund_id), item, answer, now, on_settled)
            for item, answer in batch
        ]

    return await outbox.record_outcomes(
        sessions,
        answered,
        apply,
        unrecorded=RefundStatus.PENDING.value,
        what=lambda pair: f"refund {pair[0].refund_id}",
    )


async def _record_one(
    session: AsyncSession,
    refund: Refund | None,
    item: Claimed,
    answer: ProviderRefund | PaymentProviderError,
    now: datetime,
    on_settled: RefundSettled | None,
) -> str:
    if refund is None or refund.status != RefundStatus.PENDING or refund.attempts != item.attempt:
        return refund.status if refund is not None else "missing"  # settled meanwhile (webhook, other worker)
    refund.updated_at = now
    if isinstance(answer, PaymentProviderError):
        if answer.transient and now - refund.created_at < GIVE_UP_AFTER:
            refund.next_attempt_at = now + _retry_in(item.attempt)
            refund.failure_reason = f"retrying: {answer}"[:500]
            return RefundStatus.PENDING
        reason = str(answer) if not answer.transient else f"provider unreachable for 23 h: {answer}"
        await _fail(session, refund, f"{answer.code or 'error'}: {reason}"[:500], now, on_settled)
        return RefundStatus.FAILED
    refund.provider_ref = answer.id
    if answer.status == "succeeded":
        await _succeed(session, refund, now, on_settled)
    elif answer.status in ("failed", "canceled"):
        await _fail(session, refund, answer.failure_reason or answer.status, now, on_settled)
    else:  # pending at the provider: look again shortly (or a webhook settles it first)
        refund.next_attempt_at = now + PENDING_RECHECK
    return refund.status


async def _succeed(session: AsyncSession, refund: Refund, now: datetime, on_settled: RefundSettled | None) -> None:
    refund.status = RefundStatus.SUCCEEDED
    refund.failure_reason = None
    await posting.post(
        session,
        kind=TransactionKind.REFUND_PAID,
        reference=f"refund:{refund.id}:paid",
        entries=paid_entries(refund.amount, refund.currency),
        order_id=refund.order_id,
        provider_id=refund.provider_ref,
    )
    await announce(session, refund, now)
    if on_settled is not None:
        await on_settled(session, refund, now)


async def _fail(
    session: AsyncSession, refund: Refund, reason: str, now: datetime, on_settled: RefundSettled | None
) -> None:
    refund.status = RefundStatus.FAILED
    refund.failure_reason = reason
    issued = await posting.entries_of(session, f"refund:{refund.id}:issued")
    if refund.provider_ref:
        # The provider created the refund (we have its re_) and then failed it: its balance lists the
        # refund and then its refund_failure. The ledger mirrors both (paid, then the late failure's
        # reversal, as _fail_after_success), so reconciliation matches each; the net is the issue undone.
        paid = paid_entries(refund.amount, refund.currency)
        await posting.post(
            session,
            kind=TransactionKind.REFUND_PAID,
            reference=f"refund:{refund.id}:paid",
            entries=paid,
            order_id=refund.order_id,
            provider_id=refund.provider_ref,
        )
        entries = late_failure_entries(issued, paid)
    else:  # refused before the provider made anything: nothing moved there
        entries = reversal_entries(issued)
    await posting.post(
        session,
        kind=TransactionKind.REFUND_REVERSED,
        reference=f"refund:{refund.id}:reversed",
        entries=entries,
        order_id=refund.order_id,
        provider_id=refund.provider_ref,
    )
    await reallocation.refund_failed(session, refund, now=now)  # the shop's part goes back to who bore it
    await announce(session, refund, now)
    if on_settled is not None:
        await on_settled(session, refund, now)


async def _fail_after_success(session: AsyncSession, refund: Refund, reason: str, now: datetime) -> None:
    """Undo both the issue and the payment: the provider's balance has the money again, the shop's escrow
    or the operator's goodwill gets its part back, and the order's ``refundable`` grows again. A shop part
    recovered after release (or netted by it) is given back to the shop (app/payouts/reallocation.py). The
    dispute, already resolved, is left as it is; operators see the ``refund.failed`` event."""
    refund.status = RefundStatus.FAILED
    refund.failure_reason = f"failed after it succeeded: {reason}"[:500]
    refund.updated_at = now
    issued = await posting.entries_of(session, f"refund:{refund.id}:issued")
    paid = await posting.entries_of(session, f"refund:{refund.id}:paid")
    await posting.post(
        session,
        kind=TransactionKind.REFUND_REVERSED,
        reference=f"refund:{refund.id}:reversed",
        entries=late_failure_entries(issued, paid),
        order_id=refund.order_id,
        provider_id=refund.provider_ref,
    )
    await reallocation.refund_failed(session, refund, now=now)
    await announce(session, refund, now)


async def pay_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    gateway: PaymentGateway,
    on_settled: RefundSettled | None = None,
    now: datetime | None = None,
    batch: int = BATCH,
    lease: timedelta = LEASE,
) -> int:
    """One worker pass over due refunds. Returns how many were sent to (or checked with) the provider."""
    claimed = await claim_due(sessions, now=now or utcnow(), batch=batch, lease=lease)

    async def ask(item: Claimed) -> ProviderRefund | PaymentProviderError:
        return await ask_provider(gateway, item)

    async def record_all(answered: list[Answered]) -> None:
        await record(sessions, answered, now=now or utcnow(), on_settled=on_settled)

    return await outbox.work(claimed, ask, record_all)


# --- provider webhooks ----------------------------------------------------------------------------------


async def apply_provider_event(
    session: AsyncSession, event: ProviderEvent, *, on_settled: RefundSettled | None, now: datetime | None = None
) -> str:
    """Apply a verified provider event once. Returns ``applied``, ``duplicate``, ``ignored`` or ``rejected``.

    Our own refunds are settled by it when the worker has not yet seen the answer (a refund pending at
    the provider); a refund made elsewhere (the Stripe dashboard) on one of our charges is imported, so
    the ledger keeps matching the provider. Either way the event must fit what we know first (see
    ``provider_events``): one that does not is kept as ``rejected`` and moves no money."""
    now = now or utcnow()
    if not await provider_events.claim(session, event, now):
        return "duplicate"  # another delivery of this event got here first (it waits on our row, then skips)
    if event.malformed is not None:
        rejection = provider_events.Rejection(provider_events.MALFORMED, event.malformed)
        return await provider_events.settle(session, event, "rejected", rejection=rejection)
    found = event.refund
    if found is None:
        return await provider_events.settle(session, event, "ignored")
    named = (
        await session.scalars(
            select(Refund)
            .where(or_(Refund.id == (event.our_refund_id or ""), Refund.provider_ref == found.id))
            .order_by(Refund.id)
            .limit(2)
            .with_for_update()
        )
    ).all()
    if len(named) > 1:  # the metadata names one of our refunds, the provider's id another
        rejection = provider_events.Rejection(
            provider_events.REFUND_MISMATCH, f"the event names refunds {named[0].id} and {named[1].id}"
        )
        return await provider_events.settle(session, event, "rejected", rejection=rejection)
    if named:
        return await _settle_ours(session, event, found, named[0], now, on_settled)
    if found.status != "succeeded" or event.charge_id is None:
        return await provider_events.settle(session, event, "ignored")
    order = await session.scalar(select(Order).where(Order.charge_id == event.charge_id).with_for_update())
    if order is None:  # not one of our orders' charges
        return await provider_events.settle(session, event, "ignored")
    # Stripe sends several events about one dashboard refund at once (charge.refunded, refund.created):
    # under the order's lock, one of them may have imported it meanwhile.
    imported = await session.scalar(select(Refund).where(Refund.provider_ref == found.id).with_for_update())
    if imported is not None:
        return await _settle_ours(session, event, found, imported, now, on_settled)
    misfit = provider_events.check_import(found, order_currency=order.currency, order_total=order.total_amount)
    if misfit is not None:
        return await provider_events.settle(session, event, "rejected", rejection=misfit, order_id=order.id)
    refund_id = await _import(session, order, found, now)
    return await provider_events.settle(session, event, "applied", order_id=order.id, refund_id=refund_id)


async def _settle_ours(
    session: AsyncSession,
    event: ProviderEvent,
    found: ProviderRefund,
    ours: Refund,
    now: datetime,
    on_settled: RefundSettled | None,
) -> str:
    order_charge_id = await session.scalar(select(Order.charge_id).where(Order.id == ours.order_id))
    rejection = provider_events.check_our_refund(
        found,
        event_charge_id=event.charge_id,
        refund_amount=ours.amount,
        refund_currency=ours.currency,
        refund_provider_ref=ours.provider_ref,
        order_charge_id=order_charge_id or "",
    )
    if rejection is not None:
        return await provider_events.settle(
            session, event, "rejected", rejection=rejection, order_id=ours.order_id, refund_id=ours.id
        )
    status: provider_events.Status = "applied"
    if ours.status == RefundStatus.SUCCEEDED and found.status == "failed":
        # Stripe can fail a refund after it succeeded (the card was closed): the money came back.
        await _fail_after_success(session, ours, found.failure_reason or "failed", now)
    elif ours.status != RefundStatus.PENDING:
        status = "ignored"  # already settled by the worker or an earlier event
    else:
        ours.provider_ref = found.id
        ours.updated_at = now
        if found.status == "succeeded":
            await _succeed(session, ours, now, on_settled)
        elif found.status in ("failed", "canceled"):
            await _fail(session, ours, found.failure_reason or found.status, now, on_settled)
    return await provider_events.settle(session, event, status, order_id=ours.order_id, refund_id=ours.id)


async def _import(session: AsyncSession, order: Order, found: ProviderRefund, now: datetime) -> str:
    """A refund someone made at the provider directly: it happened, so it is recorded as it is (operator
    funded, already paid), even past the cap — the provider's money has moved."""
    refund = Refund(
        id=f"rfd_{uuid.uuid4().hex}",
        order_id=order.id,
        seller_id=order.seller_id,
        order_created_at=order.created_at,
        dispute_id=None,
        source_key=f"provider:{found.id}",
        kind=RefundKind.PARTIAL.value,
        amount=found.amount,
        currency=found.currency,
        funded_by="operator",
        seller_amount=0,
        operator_amount=found.amount,
        bonus_amount=0,
        reason="made directly at the payment provider (imported from its webhook)",
        status=RefundStatus.PENDING,
        provider_ref=found.id,
        attempts=0,
        next_attempt_at=now,
        created_by="provider",
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    await session.flush()
    await posting.post(
        session,
        kind=TransactionKind.REFUND_ISSUED,
        reference=f"refund:{refund.id}:issued",
        entries=issue_entries(0, found.amount, found.currency, order.buyer_id, order.seller_id),
        order_id=order.id,
        provider_id=None,  # the grant is ours; the provider's refund is on the payment below
    )
    await _succeed(session, refund, now, None)
    return refund.id
