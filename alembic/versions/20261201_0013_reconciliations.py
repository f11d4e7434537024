"""reconciliations: provider balance transactions against the ledger (staged rows, items), and an index on
the ledger's booking time for the period scan

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("period_from", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("period_to", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("file_path", sa.String(length=1000), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("matched", sa.BigInteger(), nullable=False),
        sa.Column("amount_mismatch", sa.BigInteger(), nullable=False),
        sa.Column("missing_in_ledger", sa.BigInteger(), nullable=False),
        sa.Column("missing_in_provider", sa.BigInteger(), nullable=False),
        sa.Column("ignored", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliations")),
    )
    op.create_index("ix_reconciliations_created", "reconciliations", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_reconciliations_due",
        "reconciliations",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    # UNLOGGED on PostgreSQL: staged rows are rebuilt from the source whenever a run starts again.
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "reconciliation_rows",
        sa.Column("reconciliation_id", sa.String(length=40), nullable=False),
        sa.Column("balance_transaction_id", sa.String(length=255), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("match_class", sa.String(length=32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("in_period", sa.Boolean(), nullable=False),
        prefixes=unlogged,
    )
    op.create_index(
        "ix_reconciliation_rows_key", "reconciliation_rows", ["reconciliation_id", "provider_id"], unique=False
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("reconciliation_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=False),
        sa.Column("balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("provider_amount", sa.BigInteger(), nullable=True),
        sa.Column("provider_currency", sa.String(length=3), nullable=True),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("ledger_currency", sa.String(length=3), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("explanation_note", sa.String(length=2000), nullable=True),
        sa.Column("explained_by", sa.String(length=255), nullable=True),
        sa.Column("explained_at", DateTimeUTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_items")),
    )
    op.create_index(
        "ix_reconciliation_items_status",
        "reconciliation_items",
        ["reconciliation_id", "status", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_transactions_created_at"), "ledger_transactions", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_transactions_created_at"), table_name="ledger_transactions")
    op.drop_index("ix_reconciliation_items_status", table_name="reconciliation_items")
    op.drop_table("reconciliation_items")
    op.drop_index("ix_reconciliation_rows_key", table_name="reconciliation_rows")
    op.drop_table("reconciliation_rows")
    op.drop_index("ix_reconciliations_due", table_name="reconciliations")
    op.drop_index("ix_reconciliations_created", table_name="reconciliations")
    op.drop_table("reconciliations")
