"""orders: the release scan's partial index on (delivered_at, id), the scan's own ORDER BY

``open_payouts`` takes the oldest due orders with ``ORDER BY delivered_at, id LIMIT n``. With the index
on ``delivered_at`` alone, PostgreSQL read every due order and sorted them once the table was large
(bench/release.py, 1 M released orders); with ``id`` in the index it walks it in order and stops after
the batch. Same name and predicate (orders still held and delivered), one more column.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELEASE_DUE = sa.text("escrow_status = 'held' AND delivered_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_orders_release_due", table_name="orders")
    op.create_index(
        "ix_orders_release_due",
        "orders",
        ["delivered_at", "id"],
        unique=False,
        postgresql_where=RELEASE_DUE,
        sqlite_where=RELEASE_DUE,
    )


def downgrade() -> None:
    op.drop_index("ix_orders_release_due", table_name="orders")
    op.create_index(
        "ix_orders_release_due",
        "orders",
        ["delivered_at"],
        unique=False,
        postgresql_where=RELEASE_DUE,
        sqlite_where=RELEASE_DUE,
    )
