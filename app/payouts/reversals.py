"""Recovering after release: the seller part of a compensation granted after the order's payout.

Refund first, recover second. In the grant's transaction (``open_recovery``), the seller part the grant
took from the order's escrow (already closed by the release) is moved to ``seller_recoverable``: the
order's escrow stays at zero. What the paid transfer still holds gets a ``transfer_reversals`` row; the
rest (a transfer already reversed, or a payout of 0 all netted against debt) is the shop's debt at once.

The worker (``reverse_due``) claims pending reversals through the leased outbox (app/outbox.py, like
release and settlement), reverses the transfer with an idempotency key derived from the refund (two
workers, a retry, a crash: one reversal at Stripe) and records: ``succeeded`` (``transfer_reversed``
on the ledger with the ``trr_`` id, the payout's ``reversed`` grows, ``payout.reversed``), or, when the
provider refuses (``balance_insufficient``...), ``debt`` (``recovery_debt``: the shop's ``seller_debt``,
netted from its next release by ``release_split``; ``seller.debt_recorded``). Transient errors are
retried with the same key.

A reversal waits for its refund to have ``succeeded`` (a credit note or promo code has at its grant): the
shop's money is taken back only once the buyer has it; and for its payout to be ``paid`` (a grant while
the transfer is still ``pending`` opens its recovery the same way). Undoing a recovery — the refund failed,
the payout was refused, an appeal moved the cost to the operator — is app/payouts/reallocation.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import outbox
from app.db import utcnow
from app.ledger import posting
from app.ledger.posting import TransactionKind
from app.ledger.postings import recovery_debt_entries, recovery_entries, transfer_reversed_entries
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.payouts import payout_events
from app.payouts.gateway import PaymentGateway, PaymentProviderError, ProviderReversal
from app.payouts.models import Payout, Refund, TransferReversal
from app.payouts.schemas import PayoutStatus, RefundStatus
from app.webhooks import service as webhooks

LEASE = timedelta(seconds=60)
GIVE_UP_AFTER = timedelta(hours=23)  # Stripe keeps idempotency keys 24 h (see settlement.py)
BATCH = 50
PENDING, SUCCEEDED, DEBT, CANCELED = "pending", "succeeded", "debt", "canceled"


def reversal_key(refund_id: str) -> str:
    """The reversal's idempotency key: derived from the refund, the same on every attempt of every worker."""
    return f"sav-reversal-{refund_id}"


# --- in the grant's transaction -------------------------------------------------------------------------


async def open_recovery(session: AsyncSession, refund: Refund, order: Order, now: datetime) -> None:
    """Called by every grant (refund, credit note, promo code) after its own ledger transaction, under the
    order's row lock. Nothing to do unless the grant has a seller part and the order's payout is opened
    (``pending``: its reversal waits for the transfer to be made; ``paid``)."""
    if not refund.seller_amount or order.escrow_status != EscrowStatus.RELEASED.value:
        return
    payout = await session.scalar(select(Payout).where(Payout.order_id == order.id).with_for_update())
    if payout is None or payout.status not in (PayoutStatus.PAID, PayoutStatus.PENDING):
        return  # released with no payout row cannot happen; blocked or failed payouts leave the escrow held
    part, currency, shop = refund.seller_amount, refund.currency, payout.seller_id
    await posting.post(
        session,
        kind=TransactionKind.RECOVERY_OPENED,
        reference=f"refund:{refund.id}:recovery",
        entries=recovery_entries(part, currency, shop),
        order_id=order.id,
        provider_id=None,
    )
    committed = await session.scalar(
        select(func.coalesce(func.sum(TransferReversal.amount), 0)).where(
            TransferReversal.payout_id == payout.id, TransferReversal.status != CANCELED
        )
    )
    transfer = payout.provider_ref is not None or payout.status == PayoutStatus.PENDING  # a payout of 0 has none
    reversible = max(payout.amount - int(committed or 0), 0) if transfer else 0
    to_reverse = min(part, reversible)
    if to_reverse:
        session.add(
            TransferReversal(
                id=f"rev_{uuid.uuid4().hex}",
                payout_id=payout.id,
                refund_id=refund.id,
                amount=to_reverse,
                currency=currency,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    if part > to_reverse:  # nothing left on the transfer to take it from: the shop owes it at once
        await _record_debt(session, payout, refund.id, part - to_reverse, "nothing left to reverse", now, at_once=True)


async def _record_debt(
    session: AsyncSession,
    payout: Payout,
    refund_id: str,
    amount: int,
    reason: str,
    now: datetime,
    *,
    at_once: bool = False,
) -> None:
    """The shop's debt for (part of) a refund's seller part: at its grant (``at_once``: more than the
    transfer still holds) or when the provider refused the reversal; each once per refund."""
    step = "debt_at_once" if at_once else "recovery_debt"
    await posting.post(
        session,
        kind=TransactionKind.RECOVERY_DEBT,
        reference=f"refund:{refund_id}:{step}",
        entries=recovery_debt_entries(amount, payout.currency, payout.seller_id),
        order_id=payout.order_id,
        provider_id=None,
    )
    tag = step if at_once else "debt"  # the refused reversal's event id is unchanged
    event_id = f"evt_{uuid.uuid5(uuid.NAMESPACE_URL, f'sav:{refund_id}:{tag}').hex}"
    await webhooks.enqueue(
        session,
        event_type="seller.debt_recorded",
        event_id=event_id,
        data={
            "seller_id": payout.seller_id,
            "payout_id": payout.id,
            "order_id": payout.order_id,
            "refund_id": refund_id,
            "amount": {"amount": amount, "currency": payout.currency},
            "reason": reason,
        },
        now=now,
    )


# --- the worker (the leased outbox) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    reversal_id: str
    attempt: int
    refund_id: str
    payout_id: str
    transfer_id: str
    amount: int
    created_at: datetime


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, batch: int = BATCH, lease: timedelta = LEASE
) -> list[Claimed]:
    def take(row: Row[*tuple[Any, ...]]) -> Claimed:
        reversal, transfer_id = row
        return Claimed(
            reversal_id=reversal.id,
            attempt=reversal.attempts,
            refund_id=reversal.refund_id,
            payout_id=reversal.payout_id,
            transfer_id=transfer_id or "",
            amount=reversal.amount,
            created_at=reversal.created_at,
        )

    query = (
        select(TransferReversal, Payout.provider_ref)
        .join(Payout, Payout.id == TransferReversal.payout_id)
        .join(Refund, Refund.id == TransferReversal.refund_id)
        .where(
            Refund.status == RefundStatus.SUCCEEDED.value,  # the buyer has the money first
            Payout.status == PayoutStatus.PAID.value,  # and the transfer exists
        )
    )
    return await outbox.claim(sessions, query, table=TransferReversal, now=now, batch=batch, lease=lease, take=take)


async def ask_provider(gateway: PaymentGateway, item: Claimed) -> ProviderReversal | PaymentProviderError:
    try:
        return await gateway.reverse_transfer(
            transfer_id=item.transfer_id,
            amount=item.amount,
            idempotency_key=reversal_key(item.refund_id),
            metadata={"reversal_id": item.reversal_id, "refund_id": item.refund_id, "payout_id": item.payout_id},
        )
    except PaymentProviderError as exc:
        return exc


Answered = tuple[Claimed, ProviderReversal | PaymentProviderError]


async def record(sessions: async_sessionmaker[AsyncSession], answered: list[Answered], *, now: datetime) -> list[str]:
    async def apply(session: AsyncSession, batch: list[Answered]) -> list[str]:
        by_id = await outbox.lock_rows(session, TransferReversal, [item.reversal_id for item, _ in batch])
        return [await _record_one(session, by_id.get(item.reversal_id), item, answer, now) for item, answer in batch]

    return await outbox.record_outcomes(
        sessions, answered, apply, unrecorded=PENDING, what=lambda pair: f"transfer reversal {pair[0].reversal_id}"
    )


async def _record_one(
    session: AsyncSession,
    reversal: TransferReversal | None,
    item: Claimed,
    answer: ProviderReversal | PaymentProviderError,
    now: datetime,
) -> str:
    if reversal is None or reversal.status != PENDING or reversal.attempts != item.attempt:
        return reversal.status if reversal is not None else "missing"  # recorded meanwhile by another worker
    payout = await session.get(Payout, reversal.payout_id, with_for_update=True, populate_existing=True)
    if payout is None:  # a reversal's payout is never deleted (foreign key): a broken database
        raise RuntimeError(f"transfer reversal {reversal.id} has no payout {reversal.payout_id}")
    reversal.updated_at = now
    if isinstance(answer, PaymentProviderError):
        if answer.transient and now - item.created_at < GIVE_UP_AFTER:
            reversal.next_attempt_at = now + outbox.backoff(item.attempt, first_seconds=10, max_seconds=1800)
            reversal.failure_reason = f"retrying: {answer}"[:500]
            return PENDING
        # Refused (``balance_insufficient``: the shop's balance cannot cover it) or given up: a debt.
        reversal.status, reversal.failure_reason = DEBT, f"{answer.code or 'error'}: {answer}"[:500]
        await _record_debt(session, payout, reversal.refund_id, reversal.amount, reversal.failure_reason, now)
        return DEBT
    reversal.status, reversal.provider_ref, reversal.failure_reason = SUCCEEDED, answer.id, None
    await posting.post(
        session,
        kind=TransactionKind.TRANSFER_REVERSED,
        reference=f"refund:{reversal.refund_id}:transfer_reversed",
        entries=transfer_reversed_entries(reversal.amount, reversal.currency, payout.seller_id),
        order_id=payout.order_id,
        provider_id=answer.id,
    )
    payout.reversed += reversal.amount
    await payout_events.announce(session, payout, now, webhook=False)
    data = payout_events.read(payout)
    event_id = f"evt_{uuid.uuid5(uuid.NAMESPACE_URL, f'sav:{reversal.id}:reversed').hex}"
    await webhooks.enqueue(
        session,
        event_type="payout.reversed",
        event_id=event_id,
        data={  # the payout as ``payout.paid`` shows it, and this reversal
            **msgspec.to_builtins(data),
            "reversal": {
                "reversal_id": reversal.id,
                "refund_id": reversal.refund_id,
                "amount": {"amount": reversal.amount, "currency": reversal.currency},
                "provider_ref": answer.id,
            },
        },
        now=now,
    )
    return SUCCEEDED


async def reverse_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    gateway: PaymentGateway,
    now: datetime | None = None,
    batch: int = BATCH,
    lease: timedelta = LEASE,
) -> int:
    """One worker pass: reverse the transfers of the pending reversals. Returns how many were asked for."""
    now = now or utcnow()
    claimed = await claim_due(sessions, now=now, batch=batch, lease=lease)

    async def ask(item: Claimed) -> ProviderReversal | PaymentProviderError:
        return await ask_provider(gateway, item)

    async def record_all(answered: list[Answered]) -> None:
        await record(sessions, answered, now=now)

    return await outbox.work(claimed, ask, record_all)
