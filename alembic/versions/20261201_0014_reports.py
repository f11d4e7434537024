"""reports: the moments the KPIs measure, kept on disputes; orders indexed by date; raised seller alerts

``disputes`` gains the columns app/disputes/milestones.py sets when they happen (first response, the
operator's first response, first resolution, the resolution that ends the SLA, closing, the last
decision's fault, whether a return was required), backfilled here from the audit timeline
(``dispute_events``), the messages of the disputes' threads and the stored resolution. ``orders`` gets
the (created_at) and (seller_id, created_at) indexes the reports' windows read; ``seller_alerts`` holds
the alerts the worker raised (one raised row per shop and metric).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import advanced_alchemy.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = advanced_alchemy.types.DateTimeUTC(timezone=True)
MOMENTS = (
    "first_response_at",
    "first_operator_response_at",
    "first_resolved_at",
    "sla_resolved_at",
    "closed_at",
)
RESPONDERS = "('seller', 'agent', 'arbitrator', 'admin')"
STAFF = "('agent', 'arbitrator', 'admin')"
BUYER_READS = "('tripartite', 'buyer_seller', 'operator_buyer')"


def _earliest(column: str, subquery: str) -> None:
    """Set ``column`` to the subquery's value where it is earlier than what is there (or nothing is)."""
    op.execute(
        f"UPDATE disputes SET {column} = ({subquery}) "
        f"WHERE ({subquery}) IS NOT NULL AND ({column} IS NULL OR ({subquery}) < {column})"
    )


def upgrade() -> None:
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        for name in MOMENTS:
            batch_op.add_column(sa.Column(name, Time, nullable=True))
        batch_op.add_column(sa.Column("at_fault", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("return_required", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_orders_seller_created", ["seller_id", "created_at"], unique=False)
    op.create_table(
        "seller_alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("seller_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("raised_at", Time, nullable=False),
        sa.Column("cleared_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seller_alerts")),
    )
    op.create_index(
        "uq_seller_alerts_raised",
        "seller_alerts",
        ["seller_id", "metric"],
        unique=True,
        postgresql_where=sa.text("cleared_at IS NULL"),
        sqlite_where=sa.text("cleared_at IS NULL"),
    )
    _backfill()


def _backfill() -> None:
    event = "SELECT MIN(e.at) FROM dispute_events e WHERE e.dispute_id = disputes.id"
    message = (
        "SELECT MIN(m.created_at) FROM messages m JOIN threads t ON t.id = m.thread_id "
        "WHERE t.dispute_id = disputes.id"
    )
    _earliest("first_response_at", f"{event} AND e.actor_role IN {RESPONDERS}")
    _earliest("first_response_at", f"{message} AND m.author_role IN {RESPONDERS} AND t.audience IN {BUYER_READS}")
    after_escalation = "disputes.first_escalated_at IS NOT NULL AND {at} >= disputes.first_escalated_at"
    _earliest(
        "first_operator_response_at",
        f"{event} AND e.actor_role IN {STAFF} AND " + after_escalation.format(at="e.at"),
    )
    _earliest(
        "first_operator_response_at",
        f"{message} AND m.author_role IN {STAFF} AND " + after_escalation.format(at="m.created_at"),
    )
    _earliest("first_resolved_at", f"{event} AND e.to_status = 'resolved'")
    _earliest("sla_resolved_at", f"{event} AND e.to_status = 'resolved' AND " + after_escalation.format(at="e.at"))
    _earliest("closed_at", f"{event} AND e.to_status = 'closed'")
    # The stored resolution says who the last decision put at fault, and whether it asked for a return.
    disputes = sa.table(
        "disputes",
        sa.column("id", sa.String),
        sa.column("resolution", sa.JSON),
        sa.column("decided_by", sa.String),
        sa.column("at_fault", sa.String),
        sa.column("return_required", sa.Boolean),
    )
    op.execute(
        disputes.update()
        .where(disputes.c.decided_by.is_not(None), disputes.c.resolution.is_not(None))
        .values(at_fault=disputes.c.resolution["at_fault"].as_string())
    )
    op.execute(
        disputes.update()
        .where(disputes.c.resolution.is_not(None), disputes.c.resolution["return_required"].as_boolean())
        .values(return_required=True)
    )


def downgrade() -> None:
    op.drop_index("uq_seller_alerts_raised", table_name="seller_alerts")
    op.drop_table("seller_alerts")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_seller_created")
        batch_op.drop_index("ix_orders_created")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_column("return_required")
        batch_op.drop_column("at_fault")
        for name in reversed(MOMENTS):
            batch_op.drop_column(name)
