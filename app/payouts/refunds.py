"""Refunds from escrow: granting them (caps checked under the order's lock, ledger entries written) and
reading them as each caller may see them. Paying them is the worker's (app/payouts/settlement.py).

The refund row and its ``refund_issued`` ledger transaction commit before anything is sent to the
provider. What other domains do about a grant comes in as callbacks (app/payouts/reactions.py, wired by
app/main.py): this module imports neither disputes nor threads.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Role
from app.db import utcnow
from app.errors import Forbidden, NotFound
from app.ledger import posting
from app.ledger.posting import TransactionKind
from app.ledger.postings import issue_entries
from app.ledger.views import order_money
from app.money import Money
from app.orders.models import Order
from app.orders.service import readable_orders
from app.orders.service import resource_of as order_resource
from app.paging import newest_first_key, next_cursor, older_than, window
from app.payouts import credit, reversals, rules
from app.payouts.models import CreditNote, PromoCode, Refund
from app.payouts.reactions import Committed, PromoIssued
from app.payouts.refund_events import refund_updated
from app.payouts.schemas import RefundCreate, RefundKind, RefundRead, RefundStatus
from app.payouts.service import compensation_on_order, lock_order
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, may_ever
from app.schemas import Page
from app.sellers.models import Seller
from app.settings import Settings
from app.webhooks import service as webhooks

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


async def updated(session: AsyncSession, refund: Refund) -> None:
    """``refund.updated`` on the WebSocket, at the grant and at every status change. Read in full (a
    provider refund has no credit note or promo code to look up); the hub hides what a reader may not see."""
    if refund.kind in PROVIDER_KINDS:
        await refund_updated(session, _read(refund))
        return
    note, code = (await _extras(session, [refund.id], None)).get(refund.id, (None, None))
    await refund_updated(session, _read(refund, credit_note=note, promo_code=code))


async def announce(session: AsyncSession, refund: Refund, now: datetime) -> None:
    """``refund.succeeded`` / ``refund.failed`` to the marketplace's webhook endpoints (outbox, same
    transaction as the outcome; the event id is derived from the refund: one event per outcome), and
    ``refund.updated`` on the WebSocket."""
    await updated(session, refund)
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


async def grant_refund(
    session: AsyncSession,
    *,
    actor: Actor,
    data: RefundCreate,
    source_key: str,
    settings: Settings,
    check_role: bool = True,
    committed: Committed | None = None,
    promo_issued: PromoIssued | None = None,
) -> RefundRead:
    """Grant a refund: validated, capped by what is still refundable and by the caller's per-order limit
    under the order's row lock (app/payouts/rules.py), written with its ledger entries. The worker pays
    it after commit. ``check_role=False`` is for a dispute's resolution, checked when it was committed.

    ``committed`` adds what other domains committed on the order to what it used (the disputes' offers);
    ``promo_issued`` is told of a promo code granted for a dispute (the buyer is sent the code)."""
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
        seller_id=order.seller_id,
        order_created_at=order.created_at,
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
        status=RefundStatus.PENDING if data.kind in PROVIDER_KINDS else RefundStatus.SUCCEEDED,
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
        await reversals.open_recovery(session, refund, order, now)
        await announce(session, refund, now)
        return _read(refund, credit_note=number)
    if data.kind == RefundKind.PROMO_CODE:
        promo = await credit.issue_promo_code(
            session,
            refund,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            valid_for=timedelta(seconds=settings.promo_valid_seconds),
        )
        if data.dispute_id is not None and promo_issued is not None:
            await promo_issued(session, promo, data.dispute_id, order.id)
        await reversals.open_recovery(session, refund, order, now)
        await announce(session, refund, now)
        return await _read_one(session, refund, actor)  # a shop granting it does not see the code either
    await posting.post(
        session,
        kind=TransactionKind.REFUND_ISSUED,
        reference=f"refund:{refund.id}:issued",
        entries=issue_entries(split.seller, split.operator, order.currency, order.buyer_id, order.seller_id),
        order_id=order.id,
        provider_id=None,  # not sent yet: the provider's refund id comes with the answer
    )
    # Refund first, recover second: after the order's payout the shop's part is taken back from its transfer.
    await reversals.open_recovery(session, refund, order, now)
    await updated(session, refund)
    return _read(refund)


async def _read_one(session: AsyncSession, refund: Refund, actor: Actor) -> RefundRead:
    order = await session.get(Order, refund.order_id)
    if order is None:  # a refund's order is never deleted (foreign key): this is a broken database
        raise RuntimeError(f"refund {refund.id} has no order {refund.order_id}")
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
    if not may_ever(actor, "order", "read"):
        raise Forbidden(f"a {actor.role} may not list refunds")
    # A refund is read by whoever may read its order: the policy's order lines, compiled to SQL.
    query = (
        select(Refund, Order.buyer_id, Order.seller_id)
        .join(Order, Order.id == Refund.order_id)
        .where(readable_orders(actor))
    )
    if order_id is not None:
        query = query.where(Refund.order_id == order_id)
    if status is not None:
        query = query.where(Refund.status == status)
    if cursor is not None:
        query = query.where(older_than(cursor, Refund.created_at, Refund.id))
    found, more = window(
        (await session.execute(query.order_by(Refund.created_at.desc(), Refund.id.desc()).limit(limit + 1))).all(),
        limit,
    )
    rows = [row.Refund for row in found]
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
    return Page(items=items, next_cursor=next_cursor(rows, more, newest_first_key))
