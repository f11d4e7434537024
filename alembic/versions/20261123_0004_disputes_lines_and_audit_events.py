"""disputes, their lines and their audit events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import advanced_alchemy.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = advanced_alchemy.types.DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("buyer_id", sa.String(length=128), nullable=False),
        sa.Column("seller_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("requested", sa.JSON(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("priority_rank", sa.SmallInteger(), nullable=False),
        sa.Column("thread_id", sa.String(length=40), nullable=False),
        sa.Column("assignee_id", sa.String(length=128), nullable=True),
        sa.Column("assignee_role", sa.String(length=16), nullable=True),
        sa.Column("offer", sa.JSON(), nullable=True),
        sa.Column("resolution", sa.JSON(), nullable=True),
        sa.Column("respond_by", Time, nullable=True),
        sa.Column("return_by", Time, nullable=True),
        sa.Column("resolved_at", Time, nullable=True),
        sa.Column("return_shipment", sa.JSON(), nullable=True),
        sa.Column("return_condition", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("excluded_arbitrator", sa.String(length=128), nullable=True),
        sa.Column("appealed", sa.Boolean(), nullable=False),
        sa.Column("reopened", sa.Boolean(), nullable=False),
        sa.Column("escalated_at", Time, nullable=True),
        sa.Column("first_escalated_at", Time, nullable=True),
        sa.Column("first_claimed_at", Time, nullable=True),
        sa.Column("first_response_due", Time, nullable=True),
        sa.Column("resolution_due", Time, nullable=True),
        sa.Column("queue_due_at", Time, nullable=True),
        sa.Column("csat_score", sa.SmallInteger(), nullable=True),
        sa.Column("csat_comment", sa.Text(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_disputes_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index("ix_disputes_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_disputes_assignee_id", ["assignee_id"], unique=False)
        batch_op.create_index("ix_disputes_buyer_created", ["buyer_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_disputes_seller_created", ["seller_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_disputes_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_disputes_queue",
            ["queue_due_at", "priority_rank", "amount", "created_at", "id"],
            unique=False,
            postgresql_where=sa.text("queue_due_at IS NOT NULL"),
            sqlite_where=sa.text("queue_due_at IS NOT NULL"),
        )
        batch_op.create_index("ix_disputes_status_respond_by", ["status", "respond_by"], unique=False)
        batch_op.create_index("ix_disputes_status_return_by", ["status", "return_by"], unique=False)
        batch_op.create_index("ix_disputes_status_resolved_at", ["status", "resolved_at"], unique=False)

    op.create_table(
        "dispute_lines",
        sa.Column("dispute_id", sa.String(length=40), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dispute_id"], ["disputes.id"], name=op.f("fk_dispute_lines_dispute_id_disputes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dispute_id", "line_id", name=op.f("pk_dispute_lines")),
    )
    with op.batch_alter_table("dispute_lines", schema=None) as batch_op:
        batch_op.create_index("ix_dispute_lines_order_line", ["order_id", "line_id"], unique=False)

    op.create_table(
        "dispute_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("dispute_id", sa.String(length=40), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"], name=op.f("fk_dispute_events_dispute_id_disputes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_events")),
    )
    with op.batch_alter_table("dispute_events", schema=None) as batch_op:
        batch_op.create_index("ix_dispute_events_dispute", ["dispute_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("dispute_events")
    op.drop_table("dispute_lines")
    op.drop_table("disputes")
