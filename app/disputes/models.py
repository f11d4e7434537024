from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Dispute(Base):
    """An after-sales case about an order. Its status moves only through app/disputes/workflow.py."""

    __tablename__ = "disputes"
    __table_args__ = (
        Index("ix_disputes_buyer_created", "buyer_id", "created_at", "id"),
        Index("ix_disputes_seller_created", "seller_id", "created_at", "id"),
        Index("ix_disputes_created", "created_at", "id"),
        # The operator queue: only escalated / in_review disputes have a queue_due_at.
        Index(
            "ix_disputes_queue",
            "queue_due_at",
            "priority_rank",
            "amount",  # ascending: PostgreSQL's incremental sort orders it DESC within the few ties
            "created_at",
            "id",
            postgresql_where=text("queue_due_at IS NOT NULL"),
            sqlite_where=text("queue_due_at IS NOT NULL"),
        ),
        # Timers: the worker looks for due deadlines per status.
        Index("ix_disputes_status_respond_by", "status", "respond_by"),
        Index("ix_disputes_status_return_by", "status", "return_by"),
        Index("ix_disputes_status_resolved_at", "status", "resolved_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(String(128))
    seller_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    outcome: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    requested: Mapped[dict[str, Any]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    # What the dispute is about, in minor units: its lines' value, or the whole order.
    amount: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[str] = mapped_column(String(16))
    priority_rank: Mapped[int] = mapped_column(SmallInteger)  # 0 critical, 1 standard: sorts the queue
    thread_id: Mapped[str] = mapped_column(String(40))
    assignee_id: Mapped[str | None] = mapped_column(String(128), index=True)
    assignee_role: Mapped[str | None] = mapped_column(String(16))
    offer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    respond_by: Mapped[datetime | None]
    return_by: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    return_shipment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    return_condition: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    excluded_arbitrator: Mapped[str | None] = mapped_column(String(128))
    appealed: Mapped[bool] = mapped_column(Boolean, default=False)
    reopened: Mapped[bool] = mapped_column(Boolean, default=False)
    # The refund of its resolution was refused by the provider: back in the queue, flagged.
    refund_failed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # SLA: counted from the first escalation; the first claim is the operator's first response.
    escalated_at: Mapped[datetime | None]
    first_escalated_at: Mapped[datetime | None]
    first_claimed_at: Mapped[datetime | None]
    first_response_due: Mapped[datetime | None]
    resolution_due: Mapped[datetime | None]
    queue_due_at: Mapped[datetime | None]
    # What the KPIs measure (app/reports), set once when it happens (app/disputes/milestones.py).
    first_response_at: Mapped[datetime | None]
    first_operator_response_at: Mapped[datetime | None]
    first_resolved_at: Mapped[datetime | None]
    sla_resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    at_fault: Mapped[str | None] = mapped_column(String(16))
    return_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    csat_score: Mapped[int | None] = mapped_column(SmallInteger)
    csat_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DisputeLine(Base):
    """An order line a dispute is about. At most one open dispute per line (checked under the order lock)."""

    __tablename__ = "dispute_lines"
    __table_args__ = (Index("ix_dispute_lines_order_line", "order_id", "line_id"),)

    dispute_id: Mapped[str] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)


class DisputeEvent(Base):
    """The audit timeline: one row per transition, written with it, never updated or deleted."""

    __tablename__ = "dispute_events"
    __table_args__ = (Index("ix_dispute_events_dispute", "dispute_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    dispute_id: Mapped[str] = mapped_column(ForeignKey("disputes.id"))
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)
