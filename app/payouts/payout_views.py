"""Payouts and seller balances, read: who may see them is the policy's ``payout`` lines (a shop's members
their own shop's, finance and admins any; buyers never), compiled to SQL for lists.

A balance is derived from ledger entries, per currency: ``held`` and ``frozen`` are the shop's shares of
its orders not yet released (escrow left less commission), ``paid_out`` the transfers the provider made,
``reversed`` what came back from them, ``debt`` what the shop owes (netted from its next releases),
``owed`` what the marketplace owes it back (``seller_owed``, added to its next release's transfer).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import Forbidden, NotFound
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.ledger.posting import Account, TransactionKind
from app.money import Money
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.paging import newest_first_key, next_cursor, older_than, window
from app.payouts.models import Payout
from app.payouts.payout_events import read
from app.payouts.schemas import PayoutRead, SellerBalance, SellerBalanceRead
from app.permissions.enforcer import Resource, is_allowed, may_ever
from app.permissions.visibility import visible_resources
from app.schemas import Page
from app.sellers.models import Seller


def readable_payouts(actor: Actor) -> ColumnElement[bool]:
    """The payouts ``actor`` may read, compiled from the policy's ``payout`` lines."""
    return visible_resources(
        actor, kind=literal("payout"), buyer_id=literal(""), seller_id=Payout.seller_id, kinds={"payout": "payout"}
    )


def _require_reader(actor: Actor) -> None:
    if not may_ever(actor, "payout", "read"):
        raise Forbidden(f"a {actor.role} may not read payouts")


async def list_payouts(
    session: AsyncSession,
    *,
    actor: Actor,
    seller_id: str | None,
    order_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[PayoutRead]:
    """Newest first. A shop's member sees its own shop's only, whatever ``seller_id`` says."""
    _require_reader(actor)
    query = select(Payout).where(readable_payouts(actor))
    if seller_id is not None:
        query = query.where(Payout.seller_id == seller_id)
    if order_id is not None:
        query = query.where(Payout.order_id == order_id)
    if status is not None:
        query = query.where(Payout.status == status)
    if cursor is not None:
        query = query.where(older_than(cursor, Payout.created_at, Payout.id))
    rows, more = window(
        (await session.scalars(query.order_by(Payout.created_at.desc(), Payout.id.desc()).limit(limit + 1))).all(),
        limit,
    )
    return Page(items=[read(p) for p in rows], next_cursor=next_cursor(rows, more, newest_first_key))


async def get_payout(session: AsyncSession, *, actor: Actor, payout_id: str) -> PayoutRead:
    _require_reader(actor)
    payout = await session.get(Payout, payout_id)
    if payout is None or not is_allowed(actor, Resource(kind="payout", seller_id=payout.seller_id), "read"):
        raise NotFound("no such payout")
    return read(payout)


async def seller_balance(session: AsyncSession, *, actor: Actor, seller_id: str) -> SellerBalanceRead:
    _require_reader(actor)
    if not is_allowed(actor, Resource(kind="payout", seller_id=seller_id), "read") or (
        await session.get(Seller, seller_id) is None
    ):
        raise NotFound("no such seller")
    figures: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    escrow_left = (
        select(-func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.order_id == Order.id, LedgerEntry.account == Account.ESCROW.value)
        .scalar_subquery()
    )
    unreleased = await session.execute(
        select(Order.currency, Order.escrow_status, func.sum(escrow_left - Order.commission_amount))
        .where(Order.seller_id == seller_id, Order.escrow_status != EscrowStatus.RELEASED.value)
        .group_by(Order.currency, Order.escrow_status)
    )
    for currency, status, share in unreleased.all():
        figures[currency]["frozen" if status == EscrowStatus.FROZEN.value else "held"] += int(share or 0)
    party = await session.execute(
        select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.party_id == seller_id,
            LedgerEntry.account.in_(
                [Account.SELLER_DEBT.value, Account.SELLER_OWED.value, Account.TRANSFERS_IN_FLIGHT.value]
            ),
            # transfers_in_flight: only what the provider confirmed (the release's side is not paid yet)
            (LedgerEntry.account != Account.TRANSFERS_IN_FLIGHT.value)
            | (LedgerTransaction.kind == TransactionKind.TRANSFER_PAID.value),
        )
        .group_by(LedgerEntry.account, LedgerEntry.currency)
    )
    names = {Account.SELLER_DEBT.value: ("debt", 1), Account.SELLER_OWED.value: ("owed", -1)}
    for account, currency, total in party.all():
        name, sign = names.get(account, ("paid_out", 1))
        figures[currency][name] += sign * int(total or 0)
    reversed_ = await session.execute(
        select(Payout.currency, func.sum(Payout.reversed))
        .where(Payout.seller_id == seller_id)
        .group_by(Payout.currency)
    )
    for currency, total in reversed_.all():
        figures[currency]["reversed"] += int(total or 0)
    balances = [
        SellerBalance(
            currency=currency,
            **{
                name: Money(values.get(name, 0), currency)
                for name in ("held", "frozen", "paid_out", "reversed", "debt", "owed")
            },
        )
        for currency, values in sorted(figures.items())
    ]
    return SellerBalanceRead(seller_id=seller_id, balances=balances)
