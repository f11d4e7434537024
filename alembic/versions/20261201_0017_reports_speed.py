"""refunds: their order's shop and date, copied at write time, so the reports need no join with orders

The KPI reports count the compensation granted on the orders of a window (one shop's, or all). With only
``order_id`` on a refund, that was a join of the window's refunds with the window's orders (a hash join
against 333 000 orders for 30 days of 1 M). A refund now carries ``seller_id`` and ``order_created_at``
(an order's shop and date never change), backfilled here from ``orders``, and the two indexes the reports
read: (order_created_at) for all shops, (seller_id, order_created_at) for one.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import advanced_alchemy.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = advanced_alchemy.types.DateTimeUTC(timezone=True)


# SQLite adds a NOT NULL column in place only with a default (the backfill then replaces it on every row;
# the app always writes both). Not in batch mode: on SQLite that copies the table, and dropping the original
# fails on the foreign keys of promo codes and credit notes (as in 0009).
PLACEHOLDERS = {"seller_id": sa.text("''"), "order_created_at": sa.text("'1970-01-01 00:00:00'")}


def upgrade() -> None:
    op.add_column(
        "refunds", sa.Column("seller_id", sa.String(length=64), nullable=False, server_default=PLACEHOLDERS["seller_id"])
    )
    op.add_column(
        "refunds", sa.Column("order_created_at", Time, nullable=False, server_default=PLACEHOLDERS["order_created_at"])
    )
    op.execute(
        "UPDATE refunds SET "
        "seller_id = (SELECT o.seller_id FROM orders o WHERE o.id = refunds.order_id), "
        "order_created_at = (SELECT o.created_at FROM orders o WHERE o.id = refunds.order_id)"
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot drop a default in place; nothing relies on it
        op.alter_column("refunds", "seller_id", server_default=None)
        op.alter_column("refunds", "order_created_at", server_default=None)
    op.create_index("ix_refunds_order_created", "refunds", ["order_created_at"], unique=False)
    op.create_index("ix_refunds_seller_order_created", "refunds", ["seller_id", "order_created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refunds_seller_order_created", table_name="refunds")
    op.drop_index("ix_refunds_order_created", table_name="refunds")
    op.drop_column("refunds", "order_created_at")
    op.drop_column("refunds", "seller_id")
