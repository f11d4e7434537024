"""Releasing escrow: an order whose hold has passed pays its shop its share, once.

One worker pass (``release_due``):

1. ``open_payouts`` (one transaction): the orders due — delivered, ``delivered_at`` + hold passed,
   escrow ``held`` (a dispute before ``resolved`` freezes it), no refund ``pending``, no payout yet (or
   a ``blocked`` one whose shop now has an account) — are locked (``SKIP LOCKED``), their shops too (in
   id order: the shop's debt is read and netted one release at a time). Each gets its payout row and its
   ledger transaction (``release``, or ``debt_recorded`` for a negative share); the order's escrow moves
   to ``released``. A shop without a connected account gets a ``blocked`` payout and nothing is posted.
2. the transfers, through the leased outbox (app/outbox.py) like refunds: claimed with a lease, sent
   with an idempotency key derived from the payout id (a crash, a retry after a timeout or two workers
   get Stripe's first answer back: one transfer), recorded under the row lock: ``paid`` (the
   ``transfer_paid`` transaction carries the ``tr_`` id) or ``failed`` (the release is reversed and the
   order is ``held`` again, for finance to look at).

The scan reads the partial index ``ix_orders_release_due`` (orders held and delivered), so its cost does
not grow with the orders already released.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import noload

from app import outbox
from app.db import utcnow
from app.events import service as events
from app.ledger import posting
from app.ledger.models import LedgerEntry
from app.ledger.posting import Account, TransactionKind
from app.ledger.postings import debt_entries, release_entries, reversal_entries, transfer_paid_entries
from app.ledger.views import money_columns
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.payouts import payout_events, reallocation
from app.payouts.gateway import PaymentGateway, PaymentProviderError, ProviderTransfer
from app.payouts.models import Payout, Refund
from app.payouts.rules import release_split
from app.payouts.schemas import PayoutStatus, RefundStatus
from app.sellers.models import Seller

LEASE = timedelta(seconds=60)
GIVE_UP_AFTER = timedelta(hours=23)  # Stripe keeps idempotency keys 24 h (see settlement.py)
BATCH = 50
log = logging.getLogger("sav.payouts")
NO_ACCOUNT = "the shop has no connected Stripe account (stripe_account_id): released once it is set"


def transfer_key(payout_id: str) -> str:
    """The transfer's idempotency key: derived from the payout, the same on every attempt of every worker."""
    return f"sav-payout-{payout_id}"


# --- opening payouts (one transaction) ------------------------------------------------------------------


def due_orders(*, now: datetime, hold: timedelta) -> Any:
    pending_refund = exists().where(Refund.order_id == Order.id, Refund.status == RefundStatus.PENDING.value)
    # A payout exists already, unless it is blocked and its shop has an account now.
    settled = exists().where(
        Payout.order_id == Order.id,
        or_(Payout.status != PayoutStatus.BLOCKED.value, Seller.stripe_account_id.is_(None)),
    )
    return (
        select(Order)
        .join(Seller, Seller.id == Order.seller_id)
        .where(
            Order.escrow_status == EscrowStatus.HELD.value,
            Order.delivered_at.is_not(None),
            Order.delivered_at <= now - hold,
            ~pending_refund,
            ~settled,
        )
        .options(noload(Order.lines))
    )


async def open_payouts(session: AsyncSession, *, now: datetime, hold: timedelta, batch: int = BATCH) -> int:
    """Open the payouts of up to ``batch`` due orders in the caller's transaction. Returns how many."""
    orders = (
        await session.scalars(
            due_orders(now=now, hold=hold)
            .order_by(Order.delivered_at, Order.id)
            .limit(batch)
            .with_for_update(skip_locked=True, of=Order)
            .execution_options(populate_existing=True)
        )
    ).all()
    if not orders:
        return 0
    shops = {
        seller.id: seller
        for seller in await session.scalars(
            select(Seller)
            .where(Seller.id.in_({o.seller_id for o in orders}))
            .order_by(Seller.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    # Read after the locks (a new statement): another worker may have opened some meanwhile.
    existing = {
        p.order_id: p
        for p in await session.scalars(
            select(Payout).where(Payout.order_id.in_([o.id for o in orders])).with_for_update()
        )
    }
    # The orders' escrow and the shops' debts, read once for the batch (after the locks); each release
    # below nets a shop's debt or adds to it, and ``debts`` follows, so the next order of that shop sees it.
    escrow = await _sums(session, LedgerEntry.order_id, [o.id for o in orders], Account.ESCROW)
    debts = await _sums(session, LedgerEntry.party_id, list(shops), Account.SELLER_DEBT)
    owed = {
        key: -amount
        for key, amount in (await _sums(session, LedgerEntry.party_id, list(shops), Account.SELLER_OWED)).items()
    }
    opened = 0
    for order in orders:
        payout = existing.get(order.id)
        if payout is not None and payout.status != PayoutStatus.BLOCKED:
            continue
        escrow_left = -escrow.get((order.id, order.currency), 0)
        await _open(
            session, order, shops[order.seller_id], payout, now, escrow_left=escrow_left, debts=debts, owed=owed
        )
        opened += 1
    return opened


async def _open(
    session: AsyncSession,
    order: Order,
    shop: Seller,
    payout: Payout | None,
    now: datetime,
    *,
    escrow_left: int,
    debts: dict[tuple[str, str], int],
    owed: dict[tuple[str, str], int],
) -> None:
    key = (shop.id, order.currency)
    debt, owed_now = debts.get(key, 0), owed.get(key, 0)
    split = release_split(escrow_left=escrow_left, commission=order.commission_amount, debt=debt, owed=owed_now)
    if payout is None:
        payout = Payout(
            id=f"po_{uuid.uuid4().hex}",
            seller_id=shop.id,
            order_id=order.id,
            currency=order.currency,
            reversed=0,
            status=PayoutStatus.PENDING,
            attempts=0,
            created_at=now,
        )
        session.add(payout)
    payout.amount, payout.debt_netted, payout.next_attempt_at = split.transferred, split.debt_netted, now
    if shop.stripe_account_id is None:
        payout.status, payout.failure_reason = PayoutStatus.BLOCKED, NO_ACCOUNT
        payout.amount, payout.debt_netted = max(split.share, 0), 0  # what it would be today
        await payout_events.announce(session, payout, now)
        return
    parts: dict[str, Any] = {
        "escrow_left": escrow_left,
        "commission": order.commission_amount,
        "currency": order.currency,
        "seller_id": shop.id,
        "owed_paid": split.owed_paid,
    }
    if split.debt_recorded:
        kind, entries = TransactionKind.DEBT_RECORDED, debt_entries(**parts)
    else:
        kind, entries = TransactionKind.RELEASE, release_entries(**parts, debt_netted=split.debt_netted)
    debts[key] = debt + split.debt_recorded - split.debt_netted
    owed[key] = owed_now - split.owed_paid
    if entries:
        await posting.post(
            session,
            kind=kind,
            reference=f"payout:{payout.id}:release",
            entries=entries,
            order_id=order.id,
            provider_id=None,  # nothing has moved at the provider yet: the transfer is on ``transfer_paid``
        )
    order.escrow_status = EscrowStatus.RELEASED.value
    order.updated_at = now
    payout.failure_reason, payout.released_at = None, now
    if split.transferred:
        payout.status = PayoutStatus.PENDING
    else:  # a share of 0, all netted against debt, or a negative share: nothing to transfer
        payout.status, payout.paid_at = PayoutStatus.PAID, now
    await payout_events.announce(session, payout, now)


async def _sums(session: AsyncSession, key: Any, keys: list[str], account: Account) -> dict[tuple[str, str], int]:
    """The balance of ``account`` per (``key`` value, currency) for these keys (orders or shops), one query."""
    rows = await session.execute(
        select(key, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .where(key.in_(keys), LedgerEntry.account == account.value)
        .group_by(key, LedgerEntry.currency)
    )
    return {(k, currency): int(total or 0) for k, currency, total in rows.all()}


# --- transferring (the leased outbox) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    payout_id: str
    attempt: int
    order_id: str
    seller_id: str
    amount: int
    currency: str
    destination: str
    charge_id: str
    released_at: datetime


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, batch: int = BATCH, lease: timedelta = LEASE
) -> list[Claimed]:
    def take(row: Row[*tuple[Any, ...]]) -> Claimed:
        payout, destination, charge_id, captured, refunded = row
        # Stripe funds a transfer with ``source_transaction`` only up to what the charge still holds. When
        # the operator's own goodwill refunded the charge below the shop's share, the share is paid from
        # the platform's balance instead (no source transaction). What the ledger says is still refundable
        # is never more than what the charge holds (credit notes and promo codes do not touch it).
        funded_by_charge = bool(charge_id) and payout.amount <= int(captured or 0) - int(refunded or 0)
        return Claimed(
            payout_id=payout.id,
            attempt=payout.attempts,
            order_id=payout.order_id,
            seller_id=payout.seller_id,
            amount=payout.amount,
            currency=payout.currency,
            destination=destination or "",
            charge_id=charge_id if funded_by_charge else "",
            released_at=payout.released_at or payout.created_at,
        )

    captured, refunded = money_columns(Payout.order_id)
    query = (
        select(Payout, Seller.stripe_account_id, Order.charge_id, captured, refunded)
        .join(Seller, Seller.id == Payout.seller_id)
        .join(Order, Order.id == Payout.order_id)
    )
    return await outbox.claim(sessions, query, table=Payout, now=now, batch=batch, lease=lease, take=take)


async def ask_provider(gateway: PaymentGateway, item: Claimed) -> ProviderTransfer | PaymentProviderError:
    try:
        return await gateway.transfer(
            amount=item.amount,
            currency=item.currency,
            destination=item.destination,
            transfer_group=item.order_id,
            source_transaction=item.charge_id or None,
            idempotency_key=transfer_key(item.payout_id),
            metadata={"payout_id": item.payout_id, "order_id": item.order_id, "seller_id": item.seller_id},
        )
    except PaymentProviderError as exc:
        return exc


Answered = tuple[Claimed, ProviderTransfer | PaymentProviderError]


async def record(sessions: async_sessionmaker[AsyncSession], answered: list[Answered], *, now: datetime) -> list[str]:
    async def apply(session: AsyncSession, batch: list[Answered]) -> list[str]:
        # A refusal puts the order's escrow back (``_fail``): those orders are locked before the payouts,
        # in the order a grant locks them (order, then its payout), so the two never deadlock.
        refused = [item.order_id for item, answer in batch if isinstance(answer, PaymentProviderError)]
        if refused:
            await outbox.lock_rows(session, Order, refused)
        by_id = await outbox.lock_rows(session, Payout, [item.payout_id for item, _ in batch])
        async with events.batched(session):  # the pass's payout.updated events: one INSERT
            return [await _record_one(session, by_id.get(item.payout_id), item, answer, now) for item, answer in batch]

    return await outbox.record_outcomes(
        sessions,
        answered,
        apply,
        unrecorded=PayoutStatus.PENDING.value,
        what=lambda pair: f"payout {pair[0].payout_id}",
    )


async def _record_one(
    session: AsyncSession,
    payout: Payout | None,
    item: Claimed,
    answer: ProviderTransfer | PaymentProviderError,
    now: datetime,
) -> str:
    if payout is None or payout.status != PayoutStatus.PENDING or payout.attempts != item.attempt:
        return payout.status if payout is not None else "missing"  # recorded meanwhile by another worker
    if isinstance(answer, PaymentProviderError):
        # The shop reads its payout's reason: it gets the provider's code, never the provider's own text
        # (which speaks of the marketplace's platform account); that text goes to the operators' log.
        log.warning("payout %s: the provider answered %s: %s", payout.id, answer.code or "an error", answer)
        if answer.transient and now - item.released_at < GIVE_UP_AFTER:
            payout.next_attempt_at = now + outbox.backoff(item.attempt, first_seconds=10, max_seconds=1800)
            payout.failure_reason = f"retrying: the payment provider answered {answer.code or 'an error'}"
            return PayoutStatus.PENDING
        reason = f"{answer.code or 'error'}: the payment provider refused the transfer; the marketplace follows it up"
        await _fail(session, payout, reason, now)
        return PayoutStatus.FAILED
    payout.status, payout.provider_ref, payout.paid_at, payout.failure_reason = PayoutStatus.PAID, answer.id, now, None
    await posting.post(
        session,
        kind=TransactionKind.TRANSFER_PAID,
        reference=f"payout:{payout.id}:paid",
        entries=transfer_paid_entries(payout.amount, payout.currency, payout.seller_id),
        order_id=payout.order_id,
        provider_id=answer.id,
    )
    await payout_events.announce(session, payout, now)
    return PayoutStatus.PAID


async def _fail(session: AsyncSession, payout: Payout, reason: str, now: datetime) -> None:
    """The provider refused: the release is undone on the ledger (escrow, commission and debt as they
    were) and the order's escrow is held again; it is not released again on its own (one payout per
    order), finance sees the failed payout."""
    payout.status, payout.failure_reason = PayoutStatus.FAILED, reason
    released = await posting.entries_of(session, f"payout:{payout.id}:release")
    if released:
        await posting.post(
            session,
            kind=TransactionKind.RELEASE_REVERSED,
            reference=f"payout:{payout.id}:reversed",
            entries=reversal_entries(released),
            order_id=payout.order_id,
            provider_id=None,
        )
    order = await session.get(Order, payout.order_id, options=[noload(Order.lines)])
    if order is not None and order.escrow_status == EscrowStatus.RELEASED.value:
        order.escrow_status = EscrowStatus.HELD.value
    # Compensation granted while the transfer was pending was to be recovered from it: the escrow is open
    # again, so its seller part goes back there (the next release nets it) and its reversal is canceled.
    await reallocation.payout_failed(session, payout, now)
    await payout_events.announce(session, payout, now)


async def release_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    gateway: PaymentGateway,
    hold_seconds: int,
    now: datetime | None = None,
    batch: int = BATCH,
    lease: timedelta = LEASE,
) -> int:
    """One worker pass: open the payouts of due orders, then transfer those due. Returns how many payouts
    were opened plus how many transfers were asked for."""
    now = now or utcnow()
    async with sessions() as session, session.begin(), events.batched(session):
        opened = await open_payouts(session, now=now, hold=timedelta(seconds=hold_seconds), batch=batch)
    claimed = await claim_due(sessions, now=now, batch=batch, lease=lease)

    async def ask(item: Claimed) -> ProviderTransfer | PaymentProviderError:
        return await ask_provider(gateway, item)

    async def record_all(answered: list[Answered]) -> None:
        await record(sessions, answered, now=now)

    return opened + await outbox.work(claimed, ask, record_all)
