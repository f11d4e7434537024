"""transfer_reversals: the seller part of a compensation granted after payout, taken back from the shop

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "transfer_reversals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payout_id", sa.String(length=40), nullable=False),
        sa.Column("refund_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_transfer_reversals_payout_id_payouts")),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_transfer_reversals_refund_id_refunds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_reversals")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_transfer_reversals_refund_id")),
    )
    op.create_index("ix_transfer_reversals_payout", "transfer_reversals", ["payout_id"], unique=False)
    op.create_index(
        "ix_transfer_reversals_due",
        "transfer_reversals",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=DUE,
        sqlite_where=DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_transfer_reversals_due", table_name="transfer_reversals")
    op.drop_index("ix_transfer_reversals_payout", table_name="transfer_reversals")
    op.drop_table("transfer_reversals")
