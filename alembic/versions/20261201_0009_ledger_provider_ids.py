"""ledger transactions carry the payment provider's id they correspond to (ch_, re_)

Reconciliation joins the provider's balance transactions to ours on it. Existing rows are filled in
from what we kept: a capture (or its adjustment) gets its order's charge id (the order's charge now: a
charge changed since is not recorded anywhere), a refund paid or reversed gets the provider refund id its
refund row kept (none if the provider never gave one). Refunds granted and not yet sent, credit notes,
promo codes and their redemptions move no money at the provider: they stay null.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Not in batch mode (see downgrade): both databases add a nullable column in place.
    op.add_column("ledger_transactions", sa.Column("provider_id", sa.String(length=255), nullable=True))
    op.create_index(op.f("ix_ledger_transactions_provider_id"), "ledger_transactions", ["provider_id"], unique=False)
    # Plain SQL that SQLite and PostgreSQL both run. A refund's transactions are referenced
    # "refund:<id>:paid" and "refund:<id>:reversed" (always, for these kinds): the id is cut out of the
    # reference, so the refunds' primary key finds the row.
    op.execute(
        """
        UPDATE ledger_transactions SET provider_id = (
            SELECT orders.charge_id FROM orders WHERE orders.id = ledger_transactions.order_id
        )
        WHERE kind IN ('capture', 'capture_adjustment')
        """
    )
    op.execute(
        """
        UPDATE ledger_transactions SET provider_id = (
            SELECT refunds.provider_ref FROM refunds
            WHERE refunds.id = substr(ledger_transactions.reference, 8, length(ledger_transactions.reference) - 12)
        )
        WHERE kind = 'refund_paid'
        """
    )
    op.execute(
        """
        UPDATE ledger_transactions SET provider_id = (
            SELECT refunds.provider_ref FROM refunds
            WHERE refunds.id = substr(ledger_transactions.reference, 8, length(ledger_transactions.reference) - 16)
        )
        WHERE kind = 'refund_reversed'
        """
    )


def downgrade() -> None:
    # Not in batch mode: on SQLite that copies the table, and dropping the original fails on the ledger
    # entries' foreign key. SQLite (3.35+) drops an unindexed column in place.
    op.drop_index(op.f("ix_ledger_transactions_provider_id"), table_name="ledger_transactions")
    op.drop_column("ledger_transactions", "provider_id")
