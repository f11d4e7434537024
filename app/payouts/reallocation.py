"""Giving a shop back the seller part of a compensation it no longer bears — the one place that undoes
what a grant took from the shop, wherever that part sits by now:

- an appeal decided in the shop's favour (``reallocate``): the operator takes the cost over (ledger
  ``reallocated``, charged to ``platform_goodwill``; the buyer keeps the refund);
- a refund the provider refused or failed after it succeeded (``refund_failed``): the money came back
  into the order's escrow with the refund's reversal (ledger ``recovery_canceled``);
- a payout the provider refused while a compensation granted during its transfer was to be recovered
  from it (``payout_failed``): the escrow is open again and nets it at the next release.

Where the part sits (``give_back``): still in the order's escrow (not released, no recovery open) →
back into the escrow; a transfer reversal not attempted yet → canceled (``seller_recoverable``); taken
from the shop already (a reversal made or attempted, a debt, a release that netted it) → credited to
the shop: its outstanding ``seller_debt`` reduced first, the rest ``seller_owed``, added to its next
release's transfer. A reversal already attempted is never canceled (the provider may have made it: it
goes through, and the shop is credited the whole part). Each cause posts under its own reference per
refund, so the same decision or failure processed twice moves nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import noload

from app.ledger import posting
from app.ledger.models import LedgerEntry
from app.ledger.posting import Account, Entry, TransactionKind
from app.ledger.postings import give_back_entries, reallocation_reversed_entries
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.payouts import payout_events
from app.payouts.models import Payout, Refund, TransferReversal
from app.payouts.refunds import updated as refund_updated
from app.payouts.reversals import CANCELED, PENDING
from app.payouts.schemas import RefundStatus
from app.sellers.models import Seller
from app.webhooks import service as webhooks

REALLOCATED, GIVEN_BACK, REOPENED = "reallocated", "given_back", "recovery_canceled"
_UNDONE = (REALLOCATED, GIVEN_BACK, REOPENED)  # every way a refund's recovery is undone


async def _posted(session: AsyncSession, refund_id: str, step: str) -> bool:
    return bool(await posting.entries_of(session, f"refund:{refund_id}:{step}"))


async def live_recovery(session: AsyncSession, refund_id: str) -> bool:
    """The refund's seller part was moved to recovery (granted after the payout opened) and not undone."""
    if not await _posted(session, refund_id, "recovery"):
        return False
    return not any([await _posted(session, refund_id, step) for step in _UNDONE])


async def give_back(
    session: AsyncSession, refund: Refund, *, amount: int, source: Account, step: str, reason: str, now: datetime
) -> list[Entry]:
    """Release ``amount`` of the refund's seller part from wherever it sits, charged to ``source`` (see the
    module). Posted once per (refund, ``step``); returns what was posted (empty: nothing to move)."""
    if amount <= 0 or await _posted(session, refund.id, step):
        return []
    order = await session.get(Order, refund.order_id, options=[noload(Order.lines)])
    if order is None:  # a refund's order is never deleted (foreign key)
        raise RuntimeError(f"refund {refund.id} has no order {refund.order_id}")
    # The shop's row lock: a release netting its debt meanwhile waits (and we read its debt after it).
    shop = await session.get(Seller, order.seller_id, with_for_update=True, populate_existing=True)
    recovering = await live_recovery(session, refund.id)
    recoverable, payout = 0, None
    if recovering:
        payout = await session.scalar(select(Payout).where(Payout.order_id == order.id))
        reversal = await session.scalar(
            select(TransferReversal)
            .where(TransferReversal.refund_id == refund.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if reversal is not None and reversal.status == PENDING and reversal.attempts == 0:
            recoverable = reversal.amount  # never sent to the provider: canceled, nothing is taken
            reversal.status, reversal.failure_reason, reversal.updated_at = CANCELED, reason[:500], now
    debt = await _shop_total(session, order.seller_id, Account.SELLER_DEBT, refund.currency)
    entries = give_back_entries(
        source=source,
        amount=amount,
        in_escrow=not recovering and order.escrow_status != EscrowStatus.RELEASED.value,
        recoverable=recoverable,
        debt=debt,
        currency=refund.currency,
        seller_id=shop.id if shop is not None else order.seller_id,
    )
    if not entries:
        return []
    kind = TransactionKind.REALLOCATED if step == REALLOCATED else TransactionKind.RECOVERY_CANCELED
    await posting.post(
        session, kind=kind, reference=f"refund:{refund.id}:{step}", entries=entries, order_id=order.id, provider_id=None
    )
    await _announce(session, refund, order, payout, entries, reason, step, now)
    return entries


async def _shop_total(session: AsyncSession, seller_id: str, account: Account, currency: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.party_id == seller_id, LedgerEntry.account == account.value, LedgerEntry.currency == currency
        )
    )
    return int(total or 0)


async def _announce(
    session: AsyncSession,
    refund: Refund,
    order: Order,
    payout: Payout | None,
    entries: list[Entry],
    reason: str,
    step: str,
    now: datetime,
) -> None:
    """``payout.updated`` on the WebSocket for the payout whose recovery changed, and the webhook
    ``seller.credit_recorded`` when the shop is credited (its debt reduced, or owed back)."""
    if payout is not None:
        await payout_events.announce(session, payout, now, webhook=False)
    debt_reduced = -sum(e.amount for e in entries if e.account == Account.SELLER_DEBT)
    owed = -sum(e.amount for e in entries if e.account == Account.SELLER_OWED)
    if debt_reduced <= 0 and owed <= 0:
        return
    currency = refund.currency
    await webhooks.enqueue(
        session,
        event_type="seller.credit_recorded",
        event_id=f"evt_{uuid.uuid5(uuid.NAMESPACE_URL, f'sav:{refund.id}:{step}:credit').hex}",
        data={
            "seller_id": order.seller_id,
            "order_id": order.id,
            "refund_id": refund.id,
            "payout_id": payout.id if payout is not None else None,
            "amount": {"amount": debt_reduced + owed, "currency": currency},
            "debt_reduced": {"amount": debt_reduced, "currency": currency},
            "owed": {"amount": owed, "currency": currency},
            "reason": reason,
        },
        now=now,
    )


# --- the three causes -----------------------------------------------------------------------------------


async def reallocate(session: AsyncSession, refund: Refund, *, reason: str, now: datetime) -> int:
    """An appeal won by the shop: the refund's seller part becomes the operator's. The refund then reads
    as operator-funded (the per-order limits count it so). Returns the amount moved (0: nothing to move,
    or already moved)."""
    part = refund.seller_amount
    if refund.status == RefundStatus.FAILED or part <= 0 or await _posted(session, refund.id, REALLOCATED):
        return 0
    await give_back(
        session, refund, amount=part, source=Account.PLATFORM_GOODWILL, step=REALLOCATED, reason=reason, now=now
    )
    refund.seller_amount, refund.operator_amount, refund.funded_by = 0, refund.operator_amount + part, "operator"
    refund.updated_at = now
    await refund_updated(session, refund)
    return part


async def refund_failed(session: AsyncSession, refund: Refund, *, now: datetime) -> None:
    """The refund's reversal (refused, or failed after it succeeded) put its seller part back into the
    order's escrow: from there it goes back to whoever bore it — the shop (``give_back``), or the operator
    when an appeal had moved it there."""
    moved = await posting.entries_of(session, f"refund:{refund.id}:{REALLOCATED}")
    if moved:
        part = sum(e.amount for e in moved if e.account == Account.PLATFORM_GOODWILL)
        reference = f"refund:{refund.id}:reallocation_reversed"
        if part > 0 and not await posting.entries_of(session, reference):
            await posting.post(
                session,
                kind=TransactionKind.REALLOCATION_REVERSED,
                reference=reference,
                entries=reallocation_reversed_entries(part, refund.currency, await _seller_of(session, refund)),
                order_id=refund.order_id,
                provider_id=refund.provider_ref,
            )
        return
    await give_back(
        session,
        refund,
        amount=refund.seller_amount,
        source=Account.ESCROW,
        step=GIVEN_BACK,
        reason=f"refund {refund.id} failed",
        now=now,
    )


async def _seller_of(session: AsyncSession, refund: Refund) -> str:
    seller_id = await session.scalar(select(Order.seller_id).where(Order.id == refund.order_id))
    return str(seller_id)


async def payout_failed(session: AsyncSession, payout: Payout, now: datetime) -> None:
    """The provider refused the payout's transfer (its release is reversed, the escrow held again): every
    compensation granted while it was pending and still being recovered is charged to the escrow again."""
    granted = (
        await session.scalars(
            select(Refund)
            .where(Refund.order_id == payout.order_id, Refund.seller_amount > 0, Refund.status != RefundStatus.FAILED)
            .order_by(Refund.id)
        )
    ).all()
    for refund in granted:
        if await live_recovery(session, refund.id):
            await give_back(
                session,
                refund,
                amount=refund.seller_amount,
                source=Account.ESCROW,
                step=REOPENED,
                reason=f"payout {payout.id} failed: the escrow is held again",
                now=now,
            )
