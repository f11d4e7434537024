"""Money read from the ledger: what an order captured, refunded and can still refund, and balances.

Balances are never stored: every figure here is a sum of entries. The definitions are data
(``CAPTURE_KINDS``, ``COMPENSATION_KINDS``, ``REFUNDED_ACCOUNTS``) so the property test can hold an
independent model of the balances against these very queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.models import LedgerEntry, LedgerTransaction
from app.ledger.posting import Account, TransactionKind


@dataclass(frozen=True, slots=True)
class OrderMoney:
    captured: int
    refunded: int

    @property
    def refundable(self) -> int:
        return max(self.captured - self.refunded, 0)


CAPTURE_KINDS = (TransactionKind.CAPTURE, TransactionKind.CAPTURE_ADJUSTMENT)
# Compensation granted on an order, whatever its kind: what it took from the shop's escrow and from the
# operator's goodwill (a bonus on top of a credit note or promo code is not counted: it is not the
# buyer's money coming back).
COMPENSATION_KINDS = (
    TransactionKind.REFUND_ISSUED,
    TransactionKind.REFUND_REVERSED,
    TransactionKind.CREDIT_ISSUED,
    TransactionKind.PROMO_ISSUED,
)
REFUNDED_ACCOUNTS = (Account.ESCROW, Account.PLATFORM_GOODWILL)


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

    captured = total((Account.ESCROW,), CAPTURE_KINDS, -1)
    refunded = total(REFUNDED_ACCOUNTS, COMPENSATION_KINDS, 1)
    return captured, refunded


async def order_money(session: AsyncSession, *, order_id: str) -> OrderMoney:
    """An order's money, read from the ledger (see ``money_columns``)."""
    captured, refunded = money_columns(order_id)
    row = (await session.execute(select(captured, refunded))).one()
    return OrderMoney(captured=int(row[0]), refunded=int(row[1]))


def party_balances_query(account: Account, party_id: str) -> Any:
    """What ``party_id`` holds on ``account``, per currency, as the liability it is (credit positive)."""
    return (
        select(LedgerEntry.currency, -func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account == account.value, LedgerEntry.party_id == party_id)
        .group_by(LedgerEntry.currency)
    )


async def party_balances(session: AsyncSession, *, account: Account, party_id: str) -> dict[str, int]:
    """A buyer's store credit (``BUYER_CREDIT``) or unredeemed promo value (``PROMO_LIABILITY``), per currency."""
    rows = await session.execute(party_balances_query(account, party_id))
    return {currency: int(total) for currency, total in rows.all()}
