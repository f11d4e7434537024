"""Orders pushed by the marketplace: validated upsert, and reads for their parties and the operator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.auth import Actor, Role
from app.db import utcnow
from app.errors import BusinessRuleViolation, Conflict, NotFound, ValidationFailed
from app.ledger import posting, postings
from app.ledger.posting import TransactionKind
from app.ledger.views import OrderMoney, money_columns, order_money
from app.money import Money, require_currency
from app.orders.models import Order, OrderLine
from app.orders.schemas import Escrow, EscrowStatus, OrderLineIn, OrderRead, OrderUpsert, Payment
from app.permissions.enforcer import Resource
from app.permissions.service import authorize
from app.permissions.visibility import visible_resources
from app.sellers.models import Seller


def resource_of(order: Order) -> Resource:
    return Resource(kind="order", buyer_id=order.buyer_id, seller_id=order.seller_id)


def readable_orders(actor: Actor) -> ColumnElement[bool]:
    """The orders ``actor`` may read, as a SQL predicate compiled from the policy's ``order`` lines (the
    same lines ``resource_of`` is checked against; tests/unit/test_money_permissions.py proves they agree)."""
    return visible_resources(
        actor, kind=literal("order"), buyer_id=Order.buyer_id, seller_id=Order.seller_id, kinds={"order": "order"}
    )


def _validate(data: OrderUpsert) -> None:
    require_currency(data.total, data.currency, "total")
    require_currency(data.commission, data.currency, "commission")
    seen: set[str] = set()
    for index, line in enumerate(data.lines):
        require_currency(line.unit_price, data.currency, f"lines[{index}].unit_price")
        if line.line_id in seen:
            raise ValidationFailed(f"line_id {line.line_id!r} appears twice", field=f"lines[{index}].line_id")
        seen.add(line.line_id)
    lines_total = sum(line.quantity * line.unit_price.amount for line in data.lines)
    if lines_total != data.total.amount:
        raise BusinessRuleViolation(
            f"the lines sum to {lines_total} but total is {data.total.amount}",
            code="order.lines_mismatch",
            lines_total=lines_total,
        )
    if data.commission.amount > data.total.amount:
        raise BusinessRuleViolation("commission cannot exceed the order total", code="order.commission_exceeds_total")


def _snapshot(order: Order) -> dict[str, Any]:
    return {
        "buyer_id": order.buyer_id,
        "seller_id": order.seller_id,
        "currency": order.currency,
        "total_amount": order.total_amount,
        "commission_amount": order.commission_amount,
        "payment_provider": order.payment_provider,
        "charge_id": order.charge_id,
        "payment_intent_id": order.payment_intent_id,
        "customer_id": order.customer_id,
        "delivered_at": order.delivered_at,
        "lines": [(ln.line_id, ln.sku, ln.title, ln.quantity, ln.unit_price_amount) for ln in order.lines],
    }


def _wanted(data: OrderUpsert) -> dict[str, Any]:
    return {
        "buyer_id": data.buyer_id,
        "seller_id": data.seller_id,
        "currency": data.currency,
        "total_amount": data.total.amount,
        "commission_amount": data.commission.amount,
        "payment_provider": data.payment.provider,
        "charge_id": data.payment.charge_id,
        "payment_intent_id": data.payment.payment_intent_id,
        "customer_id": data.payment.customer_id,
        "delivered_at": data.delivered_at,
        "lines": [(ln.line_id, ln.sku, ln.title, ln.quantity, ln.unit_price.amount) for ln in data.lines],
    }


async def upsert_order(
    session: AsyncSession, *, actor: Actor, order_id: str, data: OrderUpsert, escrow_hold_seconds: int
) -> tuple[OrderRead, bool]:
    """Create or update an order. Same body again changes nothing. Returns (order, created)."""
    _validate(data)
    if await session.get(Seller, data.seller_id) is None:
        raise BusinessRuleViolation(
            f"seller {data.seller_id!r} is unknown: push it with PUT /v1/sellers/{{seller_id}} first",
            code="order.unknown_seller",
        )
    order = await session.get(Order, order_id, with_for_update=True, populate_existing=True)
    wanted = _wanted(data)
    if order is None:
        order, created = await _create(session, order_id, wanted)
        if created:
            await _record_capture(session, order, previous=None)
            return await _read(session, order, actor, escrow_hold_seconds), True
        # The same order was created by a request running at the same time: this push is an update.

    authorize(actor, resource_of(order), "write", label="order", resource_id=order_id)
    current = _snapshot(order)
    if current == wanted:
        return await _read(session, order, actor, escrow_hold_seconds), False
    if (current["buyer_id"], current["seller_id"]) != (data.buyer_id, data.seller_id):
        # Threads and disputes are bound to these parties: moving an order would expose them to others.
        raise Conflict("an order's buyer and seller cannot change once it exists", code="order.immutable")
    money_changed = (current["currency"], current["total_amount"]) != (data.currency, data.total.amount)
    if money_changed:
        money = await order_money(session, order_id=order_id)
        if money.refunded > 0:
            raise Conflict("the order's total and currency cannot change once a refund exists", code="order.immutable")
    if order.escrow_status == EscrowStatus.RELEASED and (
        money_changed or current["commission_amount"] != data.commission.amount
    ):
        # The shop was paid its share of these figures: the ledger's release would no longer add up.
        raise Conflict(
            "an order's total, currency and commission cannot change once its escrow is released",
            code="order.immutable",
        )
    if wanted["charge_id"] != current["charge_id"]:
        await _require_charge_free(session, order_id, wanted["charge_id"])
    try:
        async with session.begin_nested():
            _apply(order, wanted)
            order.revision += 1
            order.updated_at = utcnow()
            await session.flush()
    except IntegrityError:
        # Another order took this charge between our check and our write (the unique index saw it).
        await _require_charge_free(session, order_id, wanted["charge_id"])
        raise
    if money_changed:
        await _record_capture(session, order, previous=(current["currency"], current["total_amount"]))
    return await _read(session, order, actor, escrow_hold_seconds), False


async def _record_capture(session: AsyncSession, order: Order, *, previous: tuple[str, int] | None) -> None:
    """Post the buyer's payment into escrow, or adjust it when the marketplace corrects the order
    (``previous``: the currency and total captured before this push, None on the first push)."""
    entries = postings.capture_entries(currency=order.currency, total=order.total_amount, previous=previous)
    if not entries:
        return
    await posting.post(
        session,
        kind=TransactionKind.CAPTURE if previous is None else TransactionKind.CAPTURE_ADJUSTMENT,
        reference=f"order:{order.id}:capture:{order.revision}",
        entries=entries,
        order_id=order.id,
        provider_id=order.charge_id,
    )


async def _create(session: AsyncSession, order_id: str, wanted: dict[str, Any]) -> tuple[Order, bool]:
    """Insert a new order: (order, True). If a request running at the same time created this very order
    first, that order, locked: (order, False).

    A charge belongs to one order (webhooks find the order by it). The check gives the clear answer; the
    unique index decides between two pushes at the same time: the second waits for the first, fails on
    the index, and is told the same. The savepoint keeps this transaction usable to find out which."""
    await _require_charge_free(session, order_id, wanted["charge_id"])
    order = Order(id=order_id, escrow_status=EscrowStatus.HELD.value, revision=0, created_at=utcnow())
    try:
        async with session.begin_nested():
            session.add(order)
            _apply(order, wanted)
            order.updated_at = order.created_at
            await session.flush()
    except IntegrityError:
        await _require_charge_free(session, order_id, wanted["charge_id"])
        existing = await session.get(Order, order_id, with_for_update=True, populate_existing=True)
        if existing is None:
            raise
        return existing, False
    return order, True


async def _require_charge_free(session: AsyncSession, order_id: str, charge_id: str) -> None:
    holder = await session.scalar(select(Order.id).where(Order.charge_id == charge_id, Order.id != order_id))
    if holder is not None:
        raise Conflict(
            "this charge already belongs to another order: each order has its own charge",
            code="order.charge_in_use",
            errors=[{"field": "payment.charge_id", "message": "already used by another order"}],
        )


def _apply(order: Order, wanted: dict[str, Any]) -> None:
    for key, value in wanted.items():
        if key != "lines":
            setattr(order, key, value)
    order.lines = [
        OrderLine(line_id=line_id, position=i, sku=sku, title=title, quantity=qty, unit_price_amount=price)
        for i, (line_id, sku, title, qty, price) in enumerate(wanted["lines"])
    ]


async def get_order(session: AsyncSession, *, actor: Actor, order_id: str, escrow_hold_seconds: int) -> OrderRead:
    # One statement: the order, its lines and its money (two ledger subqueries).
    captured, refunded = money_columns(Order.id)
    row = (
        (
            await session.execute(
                select(Order, captured, refunded).where(Order.id == order_id).options(joinedload(Order.lines))
            )
        )
        .unique()
        .first()
    )
    if row is None:
        raise NotFound(f"order {order_id!r} does not exist")
    order = row[0]
    authorize(actor, resource_of(order), "read", label="order", resource_id=order_id)
    money = OrderMoney(captured=int(row[1]), refunded=int(row[2]))
    return await _read(session, order, actor, escrow_hold_seconds, money)


async def _read(
    session: AsyncSession,
    order: Order,
    actor: Actor,
    escrow_hold_seconds: int,
    money: OrderMoney | None = None,
) -> OrderRead:
    if money is None:
        money = await order_money(session, order_id=order.id)
    cur = order.currency
    is_buyer = actor.role == Role.BUYER
    release_at = (
        order.delivered_at + timedelta(seconds=escrow_hold_seconds)
        if order.delivered_at is not None and order.escrow_status != EscrowStatus.RELEASED
        else None
    )
    return OrderRead(
        order_id=order.id,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        currency=cur,
        total=Money(order.total_amount, cur),
        commission=None if is_buyer else Money(order.commission_amount, cur),
        lines=[
            OrderLineIn(
                line_id=ln.line_id,
                sku=ln.sku,
                title=ln.title,
                quantity=ln.quantity,
                unit_price=Money(ln.unit_price_amount, cur),
            )
            for ln in order.lines
        ],
        payment=None
        if is_buyer
        else Payment(
            provider="stripe",
            charge_id=order.charge_id,
            payment_intent_id=order.payment_intent_id,
            customer_id=order.customer_id,
        ),
        delivered_at=order.delivered_at,
        refunded=Money(money.refunded, cur),
        refundable=Money(money.refundable, cur),
        escrow=Escrow(status=EscrowStatus(order.escrow_status), release_at=release_at),
        created_at=order.created_at,
        updated_at=order.updated_at,
    )
