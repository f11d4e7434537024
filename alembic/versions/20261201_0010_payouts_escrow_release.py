"""payouts: an order's escrow released to its shop (one per order), and the release scan's index

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("status = 'pending'")
RELEASE_DUE = sa.text("escrow_status = 'held' AND delivered_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("seller_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("debt_netted", sa.BigInteger(), nullable=False),
        sa.Column("reversed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("released_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("paid_at", DateTimeUTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_payouts_order_id_orders")),
        sa.ForeignKeyConstraint(["seller_id"], ["sellers.id"], name=op.f("fk_payouts_seller_id_sellers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("order_id", name=op.f("uq_payouts_order_id")),
    )
    op.create_index("ix_payouts_seller", "payouts", ["seller_id", "created_at", "id"], unique=False)
    op.create_index("ix_payouts_created", "payouts", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_payouts_due", "payouts", ["next_attempt_at"], unique=False, postgresql_where=DUE, sqlite_where=DUE
    )
    op.create_index(
        "ix_orders_release_due",
        "orders",
        ["delivered_at"],
        unique=False,
        postgresql_where=RELEASE_DUE,
        sqlite_where=RELEASE_DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_orders_release_due", table_name="orders")
    op.drop_index("ix_payouts_due", table_name="payouts")
    op.drop_index("ix_payouts_created", table_name="payouts")
    op.drop_index("ix_payouts_seller", table_name="payouts")
    op.drop_table("payouts")
