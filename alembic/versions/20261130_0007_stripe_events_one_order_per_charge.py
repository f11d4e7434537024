"""provider events keep their outcome (rejected events for finance); one order per charge

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A charge belongs to one order. Orders that already share one must be told apart by hand first: the
    # unique index cannot be built over them, and which order owns the charge is not ours to guess.
    # Checked before any change, so a refusal leaves the schema as it was (SQLite DDL is not rolled back).
    shared = op.get_bind().execute(
        sa.text("SELECT charge_id FROM orders GROUP BY charge_id HAVING count(*) > 1 ORDER BY charge_id LIMIT 20")
    ).scalars().all()
    if shared:
        raise RuntimeError(
            "orders share these charge ids; give each order its own charge (PUT /v1/orders/{order_id}) "
            f"and migrate again: {', '.join(shared)}"
        )
    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default=sa.text("'accepted'"), nullable=False))
        batch_op.add_column(sa.Column('reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('detail', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('provider_refund_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('charge_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('amount', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('order_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('refund_id', sa.String(length=40), nullable=True))
        batch_op.create_index('ix_provider_events_status_received', ['status', 'received_at', 'id'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_charge_id'))
        batch_op.create_index(batch_op.f('ix_orders_charge_id'), ['charge_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_charge_id'))
        batch_op.create_index(batch_op.f('ix_orders_charge_id'), ['charge_id'], unique=False)

    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_events_status_received')
        batch_op.drop_column('refund_id')
        batch_op.drop_column('order_id')
        batch_op.drop_column('currency')
        batch_op.drop_column('amount')
        batch_op.drop_column('charge_id')
        batch_op.drop_column('provider_refund_id')
        batch_op.drop_column('detail')
        batch_op.drop_column('reason')
        batch_op.drop_column('status')
