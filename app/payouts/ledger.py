"""Double-entry ledger: every money movement is a transaction whose entries sum to zero.

Amounts are signed minor units, debit positive. Balances are never stored: they are sums of entries.

Accounts used so far:
  provider_balance   money the marketplace holds at the payment provider (asset)
  escrow             what is owed for an order until it is released to the seller or refunded (liability)
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.payouts.models import LedgerEntry, LedgerTransaction


class Account(StrEnum):
    PROVIDER_BALANCE = "provider_balance"
    ESCROW = "escrow"


class TransactionKind(StrEnum):
    CAPTURE = "capture"
    CAPTURE_ADJUSTMENT = "capture_adjustment"
    REFUND = "refund"


class UnbalancedTransaction(ValueError):
    """A programming error: entries that do not sum to zero must never reach the database."""


@dataclass(frozen=True, slots=True)
class Entry:
    account: Account
    amount: int
    currency: str
    party_id: str | None = None


def check_balanced(entries: list[Entry]) -> None:
    if not entries:
        raise UnbalancedTransaction("a transaction needs entries")
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry.amount == 0:
            raise UnbalancedTransaction(f"zero entry on {entry.account}")
        totals[entry.currency] += entry.amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"entries do not sum to zero: {unbalanced}")


async def post(
    session: AsyncSession, *, kind: TransactionKind, reference: str, entries: list[Entry], order_id: str | None
) -> str:
    check_balanced(entries)
    transaction_id = str(uuid.uuid4())
    await session.execute(
        insert(LedgerTransaction).values(
            id=transaction_id, kind=kind.value, order_id=order_id, reference=reference, created_at=utcnow()
        )
    )
    await session.execute(
        insert(LedgerEntry),
        [
            {
                "transaction_id": transaction_id,
                "account": e.account.value,
                "order_id": order_id,
                "party_id": e.party_id,
                "amount": e.amount,
                "currency": e.currency,
            }
            for e in entries
        ],
    )
    return transaction_id


async def order_escrow_by_kind(session: AsyncSession, order_id: str) -> dict[str, int]:
    """Sum of the order's escrow entries per transaction kind (credit negative)."""
    rows = await session.execute(
        select(LedgerTransaction.kind, func.sum(LedgerEntry.amount))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.order_id == order_id, LedgerEntry.account == Account.ESCROW.value)
        .group_by(LedgerTransaction.kind)
    )
    return {kind: int(total) for kind, total in rows.all()}
