"""reconciliations: items listed by primary-key range (``item_ranges``), no status index on the items, no
key index on the staged rows

A run inserts its items ordered by status, so each status's items are one run of ids; the reconciliation
keeps them as ``item_ranges`` ({status: [first id, last id]}) and the listing reads that range of the
primary key. ``ix_reconciliation_items_status`` was maintained for every one of a million items and cost
most of their insert; ``ix_reconciliation_rows_key`` was never used by the matching (one aggregate over
both sides) and slowed the staging's ``COPY``. The ranges of reconciliations already done are filled in.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reconciliations", sa.Column("item_ranges", sa.JSON(), nullable=True))
    bind = op.get_bind()
    recs = sa.table("reconciliations", sa.column("id", sa.String()), sa.column("item_ranges", sa.JSON()))
    items = sa.table(
        "reconciliation_items",
        sa.column("id", sa.BigInteger()),
        sa.column("reconciliation_id", sa.String()),
        sa.column("status", sa.String()),
    )
    ranges: dict[str, dict[str, list[int]]] = {}
    for rec_id, status, first, last in bind.execute(
        sa.select(items.c.reconciliation_id, items.c.status, sa.func.min(items.c.id), sa.func.max(items.c.id))
        .group_by(items.c.reconciliation_id, items.c.status)
    ):
        ranges.setdefault(rec_id, {})[status] = [int(first), int(last)]
    for rec_id, found in ranges.items():
        bind.execute(sa.update(recs).where(recs.c.id == rec_id).values(item_ranges=found))
    op.drop_index("ix_reconciliation_items_status", table_name="reconciliation_items")
    op.drop_index("ix_reconciliation_rows_key", table_name="reconciliation_rows")


def downgrade() -> None:
    op.create_index(
        "ix_reconciliation_rows_key", "reconciliation_rows", ["reconciliation_id", "provider_id"], unique=False
    )
    op.create_index(
        "ix_reconciliation_items_status",
        "reconciliation_items",
        ["reconciliation_id", "status", "id"],
        unique=False,
    )
    op.drop_column("reconciliations", "item_ranges")
