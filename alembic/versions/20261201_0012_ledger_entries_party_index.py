"""ledger_entries: an index on (party_id, account), so a shop's debt is read without scanning the ledger

The release job reads each shop's ``seller_debt`` balance for every order it releases; without this index
that read scanned every ledger entry, and releasing slowed down as history grew (bench/release.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ledger_entries_party_account", "ledger_entries", ["party_id", "account"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_party_account", table_name="ledger_entries")
