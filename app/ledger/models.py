"""The ledger's tables: transactions and their entries, written once and never updated.

(Moved from app/payouts/models.py; the table names are unchanged.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class LedgerTransaction(Base):
    """One money movement. Its entries sum to zero per currency; it is never updated or deleted."""

    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # What caused it (e.g. "order:o_1:capture:2"), unique so the same movement is never posted twice.
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    # The payment provider's object this movement corresponds to, when there is one: the charge (ch_) of a
    # capture, the provider refund (re_) of a refund paid or reversed. Null for what lives only in our
    # ledger (a refund granted and not yet sent, credit notes, promo codes). Reconciliation joins on it.
    provider_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # Indexed: reconciliation scans the movements booked in a period.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Written with the transaction (the unit of work inserts it first); never loaded through here.
    entries: Mapped[list[LedgerEntry]] = relationship(lazy="raise")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_order_account", "order_id", "account"),
        # A party's balance on one account (a shop's debt, read for every release) without a scan.
        Index("ix_ledger_entries_party_account", "party_id", "account"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(64))
    # The buyer or seller the account belongs to, when it belongs to one (buyer credit, seller payable).
    party_id: Mapped[str | None] = mapped_column(String(128))
    # Signed minor units: debit positive, credit negative.
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
