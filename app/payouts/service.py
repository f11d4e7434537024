"""Money views other domains need: what an order captured, refunded and can still refund."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import noload

from app.orders.models import Order
from app.payouts import ledger
from app.payouts.ledger import Account, Entry, TransactionKind
from app.payouts.models import LedgerEntry, LedgerTransaction, Refund
from app.payouts.rules import Split


@dataclass(frozen=True, slots=True)
class OrderMoney:
    captured: int
    refunded: int

    @property
    def refundable(self) -> int:
        return max(self.captured - self.refunded, 0)


async def record_capture(
    session: AsyncSession,
    *,
    order_id: str,
    currency: str,
    total: int,
    previous: tuple[str, int] | None,
    revision: int,
) -> None:
    """Post the buyer's payment into escrow, or adjust it when the marketplace corrects the order.

    ``previous`` is the (currency, total) captured before this push, None on the first push.
    """
    entries: list[Entry] = []
    if previous is not None:
        old_currency, old_total = previous
        if (old_currency, old_total) == (currency, total):
            return
        if old_total:
            entries += [
                Entry(Account.PROVIDER_BALANCE, -old_total, old_currency),
                Entry(Account.ESCROW, old_total, old_currency),
            ]
    if total:
        entries += [Entry(Account.PROVIDER_BALANCE, total, currency), Entry(Account.ESCROW, -total, currency)]
    entries = _net(entries)
    if not entries:
        return
    kind = TransactionKind.CAPTURE if previous is None else TransactionKind.CAPTURE_ADJUSTMENT
    await ledger.post(
        session, kind=kind, reference=f"order:{order_id}:capture:{revision}", entries=entries, order_id=order_id
    )


def _net(entries: list[Entry]) -> list[Entry]:
    """Merge entries on the same account and currency (a total change becomes one delta)."""
    sums: dict[tuple[Account, str], int] = {}
    for e in entries:
        sums[(e.account, e.currency)] = sums.get((e.account, e.currency), 0) + e.amount
    return [Entry(account, amount, currency) for (account, currency), amount in sums.items() if amount]


# Compensation granted on an order, whatever its kind: what it took from the shop's escrow and from the
# operator's goodwill (a bonus on top of a credit note or promo code is not counted: it is not the
# buyer's money coming back).
COMPENSATION_KINDS = (
    TransactionKind.REFUND_ISSUED,
    TransactionKind.REFUND_REVERSED,
    TransactionKind.CREDIT_ISSUED,
    TransactionKind.PROMO_ISSUED,
)


def money_columns(order_id: Any) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """Captured and refunded for ``order_id`` (a value or a correlated column) as two SQL scalar
    subqueries over the ledger, so a read can fetch an order and its money in one statement.

    Captured: what the buyer paid into escrow. Refunded: compensation granted (refunds paid or in flight,
    credit notes, promo codes), minus refunds the provider refused."""

    def total(accounts: tuple[Account, ...], kinds: tuple[TransactionKind, ...], sign: int) -> ScalarSelect[Any]:
        return (
            select(sign * func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(
                LedgerEntry.order_id == order_id,
                LedgerEntry.account.in_([a.value for a in accounts]),
                LedgerTransaction.kind.in_([k.value for k in kinds]),
            )
            .scalar_subquery()
        )

    captured = total((Account.ESCROW,), (TransactionKind.CAPTURE, TransactionKind.CAPTURE_ADJUSTMENT), -1)
    refunded = total((Account.ESCROW, Account.PLATFORM_GOODWILL), COMPENSATION_KINDS, 1)
    return captured, refunded


async def order_money(session: AsyncSession, *, order_id: str) -> OrderMoney:
    """An order's money, read from the ledger (see ``money_columns``)."""
    captured, refunded = money_columns(order_id)
    row = (await session.execute(select(captured, refunded))).one()
    return OrderMoney(captured=int(row[0]), refunded=int(row[1]))


async def lock_order(session: AsyncSession, order_id: str) -> Order | None:
    """The order's row, locked until the transaction ends. Every grant of compensation on an order (and
    every dispute action that commits money) takes it before reading what the order has refunded, so the
    cap and the per-order limits are checked one request at a time."""
    return await session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .options(noload(Order.lines))  # the money is in the ledger; the lines are not needed here
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def compensation_on_order(session: AsyncSession, *, order_id: str, currency: str) -> Split:
    """Who pays the compensation granted on an order so far, every kind (refunds, credit notes, promo
    codes), pending or succeeded: a failed refund gave the buyer nothing, so it uses no budget."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Refund.seller_amount), 0),
                func.coalesce(func.sum(Refund.operator_amount), 0),
                func.coalesce(func.sum(Refund.bonus_amount), 0),
            ).where(Refund.order_id == order_id, Refund.currency == currency, Refund.status != "failed")
        )
    ).one()
    return Split(seller=int(row[0]), operator=int(row[1]), bonus=int(row[2]))
