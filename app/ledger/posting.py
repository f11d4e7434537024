"""Double-entry ledger: every money movement is a transaction whose entries sum to zero.

Amounts are signed minor units, debit positive. Balances are never stored: they are sums of entries.

Accounts used so far:
  provider_balance   money the marketplace holds at the payment provider (asset)
  escrow             what is owed for an order until it is released to the seller or refunded (liability)
  refunds_in_flight  refunds granted to a buyer and not yet paid out by the provider (liability)
  platform_goodwill  what the marketplace pays from its own funds (operator-funded refunds; expense)
  platform_bonus     the operator's bonus on top of a credit note or promo code (expense)
  buyer_credit       store credit a buyer holds (liability, per buyer: party_id)
  promo_liability    the value of unredeemed promo codes (liability)
  checkout_clearing  credit and promo value spent at the marketplace's checkout, to be matched with the
                     paying order's capture (liability)
  transfers_in_flight escrow released to a shop and not yet confirmed by the provider (liability, per shop)
  platform_commission the marketplace's commission, earned when an order is released (revenue)
  seller_debt        what a shop owes the marketplace (asset, per shop: party_id): its compensation passed
                     its share; netted from its next releases
  seller_recoverable what a shop is to give back of money already transferred to it (asset, per shop): the
                     seller part of a compensation granted after its payout, until the transfer is reversed
                     (back to ``provider_balance``) or the provider refuses (it becomes ``seller_debt``)
  seller_owed        what the marketplace owes a shop back (liability, per shop: party_id): a part the shop
                     bore and no longer bears (an appeal won, a refund failed) once its debt is cleared;
                     added to its next release's transfer

A refund is two transactions: ``refund_issued`` when it is granted (escrow and/or goodwill → refunds in
flight), then ``refund_paid`` when the provider confirms (refunds in flight → provider balance), or
``refund_reversed`` (the exact opposite of the issue) when the provider refuses it before making it. A
refund the provider made and then failed (at once or after it succeeded) is ``refund_paid`` then
``refund_reversed`` undoing both, as the provider's balance lists a ``refund`` and a ``refund_failure``. Credit notes
and promo codes are one transaction when issued (escrow/goodwill/bonus → buyer credit or promo
liability) and one when spent (→ checkout clearing). The entries of each are built in ``postings.py``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.ledger.models import LedgerEntry, LedgerTransaction


class Account(StrEnum):
    PROVIDER_BALANCE = "provider_balance"
    ESCROW = "escrow"
    REFUNDS_IN_FLIGHT = "refunds_in_flight"
    PLATFORM_GOODWILL = "platform_goodwill"
    PLATFORM_BONUS = "platform_bonus"
    BUYER_CREDIT = "buyer_credit"
    PROMO_LIABILITY = "promo_liability"
    CHECKOUT_CLEARING = "checkout_clearing"
    TRANSFERS_IN_FLIGHT = "transfers_in_flight"
    PLATFORM_COMMISSION = "platform_commission"
    SELLER_DEBT = "seller_debt"
    SELLER_RECOVERABLE = "seller_recoverable"
    SELLER_OWED = "seller_owed"


class TransactionKind(StrEnum):
    CAPTURE = "capture"
    CAPTURE_ADJUSTMENT = "capture_adjustment"
    REFUND_ISSUED = "refund_issued"
    REFUND_PAID = "refund_paid"
    REFUND_REVERSED = "refund_reversed"
    CREDIT_ISSUED = "credit_issued"
    CREDIT_REDEEMED = "credit_redeemed"
    PROMO_ISSUED = "promo_issued"
    PROMO_REDEEMED = "promo_redeemed"
    RELEASE = "release"
    TRANSFER_PAID = "transfer_paid"
    RELEASE_REVERSED = "release_reversed"
    DEBT_RECORDED = "debt_recorded"
    RECOVERY_OPENED = "recovery_opened"
    TRANSFER_REVERSED = "transfer_reversed"
    RECOVERY_DEBT = "recovery_debt"
    RECOVERY_CANCELED = "recovery_canceled"
    REALLOCATED = "reallocated"
    REALLOCATION_REVERSED = "reallocation_reversed"


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
    session: AsyncSession,
    *,
    kind: TransactionKind,
    reference: str,
    entries: list[Entry],
    order_id: str | None,
    provider_id: str | None,
) -> str:
    """Add a balanced transaction to the session. Its rows are inserted at the next flush (before any
    query, or at commit), together with every other transaction posted meanwhile: a worker settling fifty
    refunds writes their ledger in two statements, not a hundred.

    ``provider_id`` is the payment provider's object it corresponds to (``ch_``, ``re_``...), or None for
    a movement the provider does not see: every caller says which, so none is left out by mistake."""
    check_balanced(entries)
    transaction_id = str(uuid.uuid4())
    session.add(
        LedgerTransaction(
            id=transaction_id,
            kind=kind.value,
            order_id=order_id,
            reference=reference,
            provider_id=provider_id,
            created_at=utcnow(),
            entries=[
                LedgerEntry(
                    account=e.account.value,
                    order_id=order_id,
                    party_id=e.party_id,
                    amount=e.amount,
                    currency=e.currency,
                )
                for e in entries
            ],
        )
    )
    return transaction_id


async def entries_of(session: AsyncSession, reference: str) -> list[Entry]:
    """The entries of the transaction posted under ``reference`` (to reverse it exactly)."""
    rows = await session.execute(
        select(LedgerEntry.account, LedgerEntry.amount, LedgerEntry.currency, LedgerEntry.party_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.reference == reference)
    )
    return [Entry(Account(account), int(amount), currency, party) for account, amount, currency, party in rows.all()]
