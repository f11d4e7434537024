"""Refunds from escrow: grant them (caps checked under the order's lock, ledger entries written), then
let the worker pay them through the escrow gateway, once.

Never paid twice: the refund row and its ``refund_issued`` ledger transaction commit before anything
is sent; the worker claims due refunds with a lease (``SKIP LOCKED``), calls the provider with the
refund id as idempotency key (a retry after a timeout or a crash gets the first answer back), and
records the outcome under the row lock (a ``refund_paid`` transaction has a unique reference).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import SYSTEM_ACTOR, Actor, Role
from app.db import utcnow
from app.errors import Forbidden, NotFound
from app.ledger import posting
from app.ledger.posting import TransactionKind
from app.ledger.postings import issue_entries, late_failure_entries, paid_entries, reversal_entries
from app.ledger.views import order_money
from app.money import Money
from app.orders.models import Order
from app.orders.service import resource_of as order_resource
from app.payouts import credit, provider_events, rules
from app.payouts.escrow import EscrowGateway, PaymentProviderError, ProviderEvent, ProviderRefund
from app.payouts.models import CreditNote, PromoCode, Refund
from app.payouts.refund_events import refund_updated
from app.payouts.schemas import RefundCreate, RefundKind, RefundRead
from app.payouts.service import compensation_on_order, lock_order
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, may_ever
from app.schemas import Page, decode_cursor, encode_cursor
from app.sellers.models import Seller
from app.settings import Settings
from app.threads import service as threads
from app.threads.schemas import Audience
from app.webhooks import service as webhooks

logger = logging.getLogger("sav.refunds")

LEASE = timedelta(seconds=60)
# Stripe keeps idempotency keys 24 h: past that, a retry could pay a second time, so we stop before.
GIVE_UP_AFTER = timedelta(hours=23)
PENDING_RECHECK = timedelta(seconds=30)
BATCH = 50
PROVIDER_KINDS = (RefundKind.FULL, RefundKind.PARTIAL)


def _read(refund: Refund, *, credit_note: str | None = None, promo_code: str | None = None) -> RefundRead:
    return RefundRead(
        refund_id=refund.id,
        order_id=refund.order_id,
        dispute_id=refund.dispute_id,
        kind=refund.kind,
        amount=Money(refund.amount, refund.currency),
        funded_by=refund.funded_by,
        seller_share=Money(refund.seller_amount, refund.currency),
        bonus=Money(refund.bonus_amount, refund.currency),
        credit_note_number=credit_note,
        promo_code=promo_code,
        status=refund.status,  # type: ignore[arg-type]
        provider_ref=refund.provider_ref,
        failure_reason=refund.failure_reason,
        reason=refund.reason,
        created_at=refund.created_at,
        updated_at=refund.updated_at,
    )


async def _updated(session: AsyncSession, refund: Refund) -> None:
    """``refund.updated`` on the WebSocket, at the grant and at every status change. Read in full (a
    provider refund has no credit note or promo code to look up); the hub hides what a reader may not see."""
    if refund.kind in PROVIDER_KINDS:
        await refund_updated(session, _read(refund))
        return
    note, code = (await _extras(session, [refund.id], None)).get(refund.id, (None, None))
    await refund_updated(session, _read(refund, credit_note=note, promo_code=code))


async def _announce(session: AsyncSession, refund: Refund, now: datetime) -> None:
    """``refund.succeeded`` / ``refund.failed`` to the marketplace's webhook endpoints (outbox, same
    transaction as the outcome; the event id is derived from the refund: one event per outcome), and
    ``refund.updated`` on the WebSocket."""
    await _updated(session, refund)
    event_id = f"evt_{uuid.uuid5(uuid.NAMESPACE_URL, f'sav:{refund.id}:{refund.status}').hex}"
    await webhooks.enqueue(
        session,
        event_type=f"refund.{refund.status}",
        event_id=event_id,
        data={
            "refund_id": refund.id,
            "order_id": refund.order_id,
            "dispute_id": refund.dispute_id,
            "kind": refund.kind,
            "amount": {"amount": refund.amount, "currency": refund.currency},
            "funded_by": refund.funded_by,
            "status": refund.status,
            "provider_ref": refund.provider_ref,
            "failure_reason": refund.failure_reason,
        },
        now=now,
    )


# --- granting -------------------------------------------------------------------------------------------


# Read under the order's lock, what other domains have committed on the order but not yet granted (the
# disputes' accepted resolutions and open offers): it counts against the per-order limits like a grant.
Committed = Callable[[AsyncSession, str], Awaitable[rules.Split]]


async def grant_refund(
    session: AsyncSession,
    *,
    actor: Actor,
    data: RefundCreate,
    source_key: str,
    settings: Settings,
    check_role: bool = True,
    committed: Committed | None = None,
) -> RefundRead:
    """Grant a refund: validated, capped by what is still refundable and by the caller's per-order limit
    under the order's row lock (app/payouts/rules.py), written with its ledger entries. The worker pays
    it after commit. ``check_role=False`` is for a dispute's resolution, checked when it was committed."""
    existing = await session.scalar(select(Refund).where(Refund.source_key == source_key))
    if existing is not None:
        return await _read_one(session, existing, actor)
    # The lock serializes every refund of this order: ten concurrent partial refunds that together
    # exceed the capture (or a shop's budget) cannot all pass the checks below.
    order = await lock_order(session, data.order_id)
    if order is None or not is_allowed(actor, order_resource(order), "read"):
        raise NotFound(f"order {data.order_id!r} does not exist")
    grant = rules.compensation(
        data.kind.value,
        amount=data.amount,
        funded_by=data.funded_by,
        seller_share=data.seller_share,
        bonus_percent=data.bonus_percent,
        currency=order.currency,
        ceiling=(await order_money(session, order_id=order.id)).refundable,
    )
    if check_role:
        seller = await session.get(Seller, order.seller_id) if actor.role == Role.SELLER else None
        used = await compensation_on_order(session, order_id=order.id, currency=order.currency)
        if committed is not None:
            used += await committed(session, order.id)
        rules.check_grant(
            actor.role.value,
            funded_by=data.funded_by,
            grant=grant.split,
            used=used,
            budget=rules.budget_in(
                seller.refund_budget_amount if seller else None,
                seller.refund_budget_currency if seller else None,
                order.currency,
            ),
            goodwill_limit=settings.agent_goodwill_limit,
        )
    split = grant.split
    now = utcnow()
    refund = Refund(
        id=f"rfd_{uuid.uuid4().hex}",
        order_id=order.id,
        dispute_id=data.dispute_id,
        source_key=source_key,
        kind=data.kind.value,
        amount=grant.amount,
        currency=order.currency,
        funded_by=data.funded_by,
        seller_amount=split.seller,
        operator_amount=split.operator,
        bonus_amount=split.bonus,
        reason=data.reason,
        # Credit and promo codes live in our ledger: granted is done. Refunds wait for the provider.
        status="pending" if data.kind in PROVIDER_KINDS else "succeeded",
        attempts=0,
        next_attempt_at=now,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    await session.flush()
    if data.kind == RefundKind.CREDIT:
        number = await credit.issue_credit_note(session, refund, buyer_id=order.buyer_id, seller_id=order.seller_id)
        await _announce(session, refund, now)
        return _read(refund, credit_note=number)
    if data.kind == RefundKind.PROMO_CODE:
        promo = await credit.issue_promo_code(
            session,
            refund,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            valid_for=timedelta(seconds=settings.promo_valid_seconds),
        )
        if data.dispute_id is not None:
            await _tell_buyer(session, data.dispute_id, promo)
        await _announce(session, refund, now)
        return await _read_one(session, refund, actor)  # a shop granting it does not see the code either
    await posting.post(
        session,
        kind=TransactionKind.REFUND_ISSUED,
        reference=f"refund:{refund.id}:issued",
        entries=issue_entries(split.seller, split.operator, order.currency, order.buyer_id, order.seller_id),
        order_id=order.id,
        provider_id=None,  # not sent yet: the provider's refund id comes with the answer
    )
    await _updated(session, refund)
    return _read(refund)


async def _tell_buyer(session: AsyncSession, dispute_id: str, promo: PromoCode) -> None:
    """Post the code to the buyer where only the buyer and operator staff read: the dispute's
    ``operator_buyer`` thread (opened if needed), never the thread the shop shares. The code is a bearer
    secret. The author is the service itself (role ``system``), not a member of staff."""
    refund = await session.get(Refund, promo.refund_id)
    assert refund is not None  # flushed just before, in this transaction
    value = f"{promo.amount / 100:.2f} {promo.currency}"
    body = (
        f"Your promo code {promo.code} is worth {value} on your next order, "
        f"until {promo.expires_at:%Y-%m-%d}. It can be used once, by you only."
    )
    await threads.post_to_party(
        session,
        actor=SYSTEM_ACTOR,
        dispute_id=dispute_id,
        order_id=refund.order_id,
        audience=Audience.OPERATOR_BUYER,
        buyer_id=promo.buyer_id,
        seller_id=None,
        subject=f"Your compensation for dispute {dispute_id}",
        body=body,
    )


async def _read_one(session: AsyncSession, refund: Refund, actor: Actor) -> RefundRead:
    order = await session.get(Order, refund.order_id)
    assert order is not None  # a refund's order is never deleted
    extras = await _extras(session, [refund.id], actor)
    note, code = extras.get(refund.id, (None, None))
    return _disclosed(_read(refund, credit_note=note, promo_code=code), actor, order.buyer_id, order.seller_id)


def _disclosed(read: RefundRead, actor: Actor, buyer_id: str, seller_id: str) -> RefundRead:
    """The refund as this caller may see it: who funds it is left out for whom the policy keeps it from
    (the buyer), as on the dispute itself (app/permissions/disclosure.py)."""
    if disclosure.view_of(actor, buyer_id=buyer_id, seller_id=seller_id).funding:
        return read
    return msgspec.structs.replace(read, funded_by=None, seller_share=None)


async def _extras(
    session: AsyncSession, refund_ids: list[str], actor: Actor | None
) -> dict[str, tuple[str | None, str | None]]:
    """Credit note numbers and promo codes of these refunds. A promo code is a bearer secret of its buyer:
    the policy's ``promo_code`` lines say who else reads it (never a shop). ``actor=None`` reads them all,
    for the ``refund.updated`` event, which the hub then shows each reader as the policy allows."""
    found: dict[str, tuple[str | None, str | None]] = {}
    if not refund_ids:
        return found
    for refund_id, number in (
        await session.execute(
            select(CreditNote.refund_id, CreditNote.number).where(CreditNote.refund_id.in_(refund_ids))
        )
    ).all():
        found[refund_id] = (number, None)
    if actor is not None and not may_ever(actor, "promo_code", "read"):
        return found
    for refund_id, code, buyer_id, seller_id in (
        await session.execute(
            select(PromoCode.refund_id, PromoCode.code, PromoCode.buyer_id, Order.seller_id)
            .join(Refund, Refund.id == PromoCode.refund_id)
            .join(Order, Order.id == Refund.order_id)
            .where(PromoCode.refund_id.in_(refund_ids))
        )
    ).all():
        if actor is None or is_allowed(
            actor, Resource(kind="promo_code", buyer_id=buyer_id, seller_id=seller_id), "read"
        ):
            found[refund_id] = (None, code)
    return found


# --- reading --------------------------------------------------------------------------------------------


async def get_refund(session: AsyncSession, *, actor: Actor, refund_id: str) -> RefundRead:
    refund = await session.get(Refund, refund_id)
    order = await session.get(Order, refund.order_id) if refund is not None else None
    if refund is None or order is None or not is_allowed(actor, order_resource(order), "read"):
        raise NotFound(f"refund {refund_id!r} does not exist")
    return await _read_one(session, refund, actor)


async def list_refunds(
    session: AsyncSession, *, actor: Actor, order_id: str | None, status: str | None, limit: int, cursor: str | None
) -> Page[RefundRead]:
    query = select(Refund, Order.buyer_id, Order.seller_id).join(Order, Order.id == Refund.order_id)
    if actor.role == Role.BUYER:
        query = query.where(Order.buyer_id == actor.id)
    elif actor.role == Role.SELLER:
        query = query.where(Order.seller_id == actor.seller_id)
    elif not is_allowed(actor, Resource(kind="order"), "read"):  # operator staff, finance, the marketplace
        raise Forbidden(f"a {actor.role} may not list refunds")
    if order_id is not None:
        query = query.where(Refund.order_id == order_id)
    if status is not None:
        query = query.where(Refund.status == status)
    if cursor is not None:
        at, last_id = decode_cursor(cursor, (datetime, str))
        query = query.where(or_(Refund.created_at < at, and_(Refund.created_at == at, Refund.id < last_id)))
    found = list(
        (await session.execute(query.order_by(Refund.created_at.desc(), Refund.id.desc()).limit(limit + 1))).all()
    )
    more, found = len(found) > limit, found[:limit]
    rows = [row.Refund for row in found]
    next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
    extras = await _extras(session, [r.id for r in rows], actor)
    items = [
        _disclosed(
            _read(r, credit_note=extras.get(r.id, (None, None))[0], promo_code=extras.get(r.id, (None, None))[1]),
            actor,
            buyer_id,
            seller_id,
        )
        for r, buyer_id, seller_id in found
    ]
    return Page(items=items, next_cursor=next_cursor)


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


# Called in the transaction that settles a refund (the disputes domain moves its dispute on).
OnSettled = Callable[[AsyncSession, Refund, datetime], Awaitable[None]]


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, batch: int = BATCH, lease: timedelta = LEASE
) -> list[Claimed]:
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                select(Refund, Order.charge_id, Order.payment_intent_id)
                .join(Order, Order.id == Refund.order_id)
                .where(Refund.status == "pending", Refund.next_attempt_at <= now)
                .order_by(Refund.next_attempt_at)
                .limit(batch)
                .with_for_update(skip_locked=True, of=Refund)
            )
        ).all()
        claimed = []
        for refund, charge_id, payment_intent_id in rows:
            refund.attempts += 1
            refund.next_attempt_at = now + lease
            claimed.append(
                Claimed(
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
            )
        return claimed


async def ask_provider(gateway: EscrowGateway, item: Claimed) -> ProviderRefund | PaymentProviderError:
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
    return timedelta(seconds=min(10 * 2 ** (attempt - 1), 1800))


async def record(
    sessions: async_sessionmaker[AsyncSession],
    answered: list[tuple[Claimed, ProviderRefund | PaymentProviderError]],
    *,
    now: datetime,
    on_settled: OnSettled | None,
) -> list[str]:
    """Apply the provider's answers of one pass in one transaction, under the refunds' row locks (taken
    in id order, so two recorders never deadlock). Returns each refund's status after.

    One transaction for the batch keeps the worker's database round trips per refund near one (ledger
    rows, webhook rows and status updates are flushed together). If it fails, each answer is recorded
    again in its own transaction, so one refund that cannot be recorded does not hold back the others;
    that one stays pending, its lease expires, and the next pass asks the provider again with its key."""
    if not answered:
        return []
    try:
        return await _record_together(sessions, answered, now=now, on_settled=on_settled)
    except Exception:
        if len(answered) == 1:
            raise
        logger.exception("recording %d refund outcomes together failed; recording them one by one", len(answered))
    statuses = []
    for pair in answered:
        try:
            statuses += await _record_together(sessions, [pair], now=now, on_settled=on_settled)
        except Exception:
            logger.exception("recording the outcome of refund %s failed", pair[0].refund_id)
            statuses.append("pending")
    return statuses


async def _record_together(
    sessions: async_sessionmaker[AsyncSession],
    answered: list[tuple[Claimed, ProviderRefund | PaymentProviderError]],
    *,
    now: datetime,
    on_settled: OnSettled | None,
) -> list[str]:
    async with sessions() as session, session.begin():
        rows = await session.scalars(
            select(Refund)
            .where(Refund.id.in_([item.refund_id for item, _ in answered]))
            .order_by(Refund.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        by_id = {refund.id: refund for refund in rows}
        return [
            await _record_one(session, by_id.get(item.refund_id), item, answer, now, on_settled)
            for item, answer in answered
        ]


async def _record_one(
    session: AsyncSession,
    refund: Refund | None,
    item: Claimed,
    answer: ProviderRefund | PaymentProviderError,
    now: datetime,
    on_settled: OnSettled | None,
) -> str:
    if refund is None or refund.status != "pending" or refund.attempts != item.attempt:
        return refund.status if refund is not None else "missing"  # settled meanwhile (webhook, other worker)
    refund.updated_at = now
    if isinstance(answer, PaymentProviderError):
        if answer.transient and now - refund.created_at < GIVE_UP_AFTER:
            refund.next_attempt_at = now + _retry_in(item.attempt)
            refund.failure_reason = f"retrying: {answer}"[:500]
            return "pending"
        reason = str(answer) if not answer.transient else f"provider unreachable for 23 h: {answer}"
        await _fail(session, refund, f"{answer.code or 'error'}: {reason}"[:500], now, on_settled)
        return "failed"
    refund.provider_ref = answer.id
    if answer.status == "succeeded":
        await _succeed(session, refund, now, on_settled)
    elif answer.status in ("failed", "canceled"):
        await _fail(session, refund, answer.failure_reason or answer.status, now, on_settled)
    else:  # pending at the provider: look again shortly (or a webhook settles it first)
        refund.next_attempt_at = now + PENDING_RECHECK
    return refund.status


async def _succeed(session: AsyncSession, refund: Refund, now: datetime, on_settled: OnSettled | None) -> None:
    refund.status = "succeeded"
    refund.failure_reason = None
    await posting.post(
        session,
        kind=TransactionKind.REFUND_PAID,
        reference=f"refund:{refund.id}:paid",
        entries=paid_entries(refund.amount, refund.currency),
        order_id=refund.order_id,
        provider_id=refund.provider_ref,
    )
    await _announce(session, refund, now)
    if on_settled is not None:
        await on_settled(session, refund, now)


async def _fail(
    session: AsyncSession, refund: Refund, reason: str, now: datetime, on_settled: OnSettled | None
) -> None:
    refund.status = "failed"
    refund.failure_reason = reason
    issued = await posting.entries_of(session, f"refund:{refund.id}:issued")
    await posting.post(
        session,
        kind=TransactionKind.REFUND_REVERSED,
        reference=f"refund:{refund.id}:reversed",
        entries=reversal_entries(issued),
        order_id=refund.order_id,
        provider_id=refund.provider_ref,
    )
    await _announce(session, refund, now)
    if on_settled is not None:
        await on_settled(session, refund, now)


async def _fail_after_success(session: AsyncSession, refund: Refund, reason: str, now: datetime) -> None:
    """Undo both the issue and the payment: the provider's balance has the money again, the shop's escrow
    or the operator's goodwill gets its part back, and the order's ``refundable`` grows again. The
    dispute, already resolved, is left as it is; operators see the ``refund.failed`` event."""
    refund.status = "failed"
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
    await _announce(session, refund, now)


async def pay_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    gateway: EscrowGateway,
    on_settled: OnSettled | None = None,
    now: datetime | None = None,
    batch: int = BATCH,
    lease: timedelta = LEASE,
) -> int:
    """One worker pass over due refunds. Returns how many were sent to (or checked with) the provider."""
    claimed = await claim_due(sessions, now=now or utcnow(), batch=batch, lease=lease)
    answers: list[Any] = await asyncio.gather(*(ask_provider(gateway, item) for item in claimed))
    await record(sessions, list(zip(claimed, answers, strict=True)), now=now or utcnow(), on_settled=on_settled)
    return len(claimed)


# --- provider webhooks ----------------------------------------------------------------------------------


async def apply_provider_event(
    session: AsyncSession, event: ProviderEvent, *, on_settled: OnSettled | None, now: datetime | None = None
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
    on_settled: OnSettled | None,
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
    if ours.status == "succeeded" and found.status == "failed":
        # Stripe can fail a refund after it succeeded (the card was closed): the money came back.
        await _fail_after_success(session, ours, found.failure_reason or "failed", now)
    elif ours.status != "pending":
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
        status="pending",
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
