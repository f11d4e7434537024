"""Reconciliation's tables: a reconciliation, its provider rows while it runs, and what it found.

The provider's rows are staged in ``reconciliation_rows`` (UNLOGGED on PostgreSQL: a crash loses them and
the worker starts the reconciliation again from scratch anyway) and dropped when it finishes; the matching
is SQL over them and the ledger. ``reconciliation_items`` keeps one row per matched key (a provider object
and a match class), listed by status in id order: written ordered by status, each status's items are one run
of ids, kept on the reconciliation (``item_ranges``) and read as a primary-key range.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.types.datetime import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

RUNNING = "running"
DONE = "done"
FAILED = "failed"
SOURCES = ("provider", "file")


class Reconciliation(Base):
    __tablename__ = "reconciliations"
    __table_args__ = (
        Index("ix_reconciliations_created", "created_at", "id"),
        Index(
            "ix_reconciliations_due",
            "next_attempt_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    period_from: Mapped[datetime | None]
    period_to: Mapped[datetime | None]
    # The export on disk: an upload saved under SAV_RECONCILIATION_DIR, or the file the CLI was given.
    file_path: Mapped[str | None] = mapped_column(String(1000))
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_mismatch: Mapped[int] = mapped_column(BigInteger, default=0)
    missing_in_ledger: Mapped[int] = mapped_column(BigInteger, default=0)
    missing_in_provider: Mapped[int] = mapped_column(BigInteger, default=0)
    ignored: Mapped[int] = mapped_column(BigInteger, default=0)
    # [{currency, provider_net, ledger_net, gross_drift}], written when done.
    totals: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # {status: [first item id, last item id]}, written with the items (each status's ids are one run): the
    # items are listed by primary-key range, with no index of their own.
    item_ranges: Mapped[dict[str, list[int]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # The worker's lease (as app/outbox.py): who runs it counts an attempt and owns it until next_attempt_at.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]


# Staged provider rows: no primary key (COPY speed; only ever read by reconciliation_id, then deleted).
reconciliation_rows = Table(
    "reconciliation_rows",
    Base.metadata,
    Column("reconciliation_id", String(40), nullable=False),
    Column("balance_transaction_id", String(255), nullable=False),
    Column("provider_id", String(255)),
    # rules.MatchClass, or null: not ours to book (ignored)
    Column("match_class", String(32)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created", DateTimeUTC(timezone=True), nullable=False),
    # False: listed in the edge band around the period (absorbs the ledger's movements, never a break)
    Column("in_period", Boolean, nullable=False),
    # UNLOGGED on PostgreSQL: set by the migration (a table prefix here would apply to SQLite too).
)


class ReconciliationItem(Base):
    __tablename__ = "reconciliation_items"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[str] = mapped_column(String(255))
    balance_transaction_id: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    provider_amount: Mapped[int | None] = mapped_column(BigInteger)
    provider_currency: Mapped[str | None] = mapped_column(String(3))
    ledger_amount: Mapped[int | None] = mapped_column(BigInteger)
    ledger_currency: Mapped[str | None] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(200))
    explanation_note: Mapped[str | None] = mapped_column(String(2000))
    explained_by: Mapped[str | None] = mapped_column(String(255))
    explained_at: Mapped[datetime | None]
