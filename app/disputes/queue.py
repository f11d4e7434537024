"""The operator queue: which disputes are critical, their SLA, when one is overdue, and the queue order.

A dispute enters the queue when it is escalated and leaves it when it moves on (``queue_due_at`` is set
only in ``escalated`` and ``in_review``). Its SLA is counted from the first escalation, by priority: the
operator's first response (the first claim, in practice) and the resolution end its two clocks
(:data:`SLA_CLOCKS`, also what the KPIs count). The queue shows the most urgent
first: the nearest due date (a breached one is in the past, so first), then critical before standard,
then the larger amount, then the older. ``transitions.py`` keeps the SLA columns up to date on every
change; the reads (``service.to_read``) show them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.disputes.models import Dispute
from app.disputes.schemas import Reason, Sla
from app.disputes.workflow import Status
from app.errors import ValidationFailed
from app.schemas import decode_cursor
from app.settings import Settings

CRITICAL_REASONS = frozenset({Reason.NOT_RECEIVED, Reason.DAMAGED, Reason.WRONG_ITEM})
QUEUE_STATUSES = (Status.ESCALATED, Status.IN_REVIEW)
CRITICAL: Final = "critical"
STANDARD: Final = "standard"


def priority_of(reason: Reason, order_total: int, settings: Settings) -> tuple[str, int]:
    """(priority, rank): critical for a missing, damaged or wrong item or a large order. The rank (0
    critical, 1 standard) is what the queue sorts on."""
    critical = reason in CRITICAL_REASONS or order_total >= settings.dispute_critical_amount
    return (CRITICAL, 0) if critical else (STANDARD, 1)


# The SLA breach, one definition for the queue's ``sla.breached`` and the KPIs' SLA breach rate: each clock
# runs from the first escalation to its due date and stops at the first of its moments (kept on the row by
# milestones.py); with none of them yet, it is still running (now). The operator's first response is the
# first action of operator staff after the first escalation (the claim, in practice) or their first message
# in a thread of the dispute after it; the resolution is the first time it reached `resolved` after it; a
# dispute closed without them stopped both clocks when it closed. Breached: either clock passed its due.
SLA_CLOCKS: Final = (
    ("first_response_due", ("first_operator_response_at", "closed_at")),
    ("resolution_due", ("sla_resolved_at", "closed_at")),
)


def sla_breached(dispute: Dispute, now: datetime) -> bool:
    """The definition above, on a loaded dispute."""
    if dispute.first_escalated_at is None:
        return False
    for due_column, stops in SLA_CLOCKS:
        due = getattr(dispute, due_column)
        stopped = next((at for at in (getattr(dispute, c) for c in stops) if at is not None), now)
        if due is not None and stopped > due:
            return True
    return False


def sla_breached_sql(now: datetime) -> ColumnElement[bool]:
    """The same definition as a SQL condition (the reports count it without loading disputes)."""
    at_now = literal(now, Dispute.created_at.type)
    late = [
        func.coalesce(*(getattr(Dispute, c) for c in stops), at_now) > getattr(Dispute, due_column)
        for due_column, stops in SLA_CLOCKS
    ]
    return and_(Dispute.first_escalated_at.is_not(None), or_(*late))


def sla_of(dispute: Dispute, now: datetime) -> Sla | None:
    """The SLA as shown in a response: its due dates and whether either was missed (or is being missed)."""
    if dispute.first_response_due is None:
        return None
    return Sla(
        first_response_due=dispute.first_response_due,
        resolution_due=dispute.resolution_due,
        breached=sla_breached(dispute, now),
    )


def is_overdue(dispute: Dispute, now: datetime, settings: Settings) -> bool:
    """Escalated and still unclaimed for longer than the queue allows."""
    return (
        dispute.status == Status.ESCALATED
        and dispute.assignee_id is None
        and dispute.escalated_at is not None
        and now - dispute.escalated_at > timedelta(seconds=settings.queue_overdue_seconds)
    )


def update_sla(dispute: Dispute, settings: Settings, now: datetime) -> None:
    """Set the SLA due dates at the first escalation, the first claim, and where the dispute sorts in the
    queue (``queue_due_at``: the first response due until claimed, then the resolution due)."""
    if dispute.escalated_at is not None and dispute.first_escalated_at is None:
        critical = dispute.priority == CRITICAL
        first = (
            settings.sla_critical_first_response_seconds if critical else settings.sla_standard_first_response_seconds
        )
        total = settings.sla_critical_resolution_seconds if critical else settings.sla_standard_resolution_seconds
        dispute.first_escalated_at = dispute.escalated_at
        dispute.first_response_due = dispute.escalated_at + timedelta(seconds=first)
        dispute.resolution_due = dispute.escalated_at + timedelta(seconds=total)
    if dispute.status == Status.IN_REVIEW and dispute.first_claimed_at is None:
        dispute.first_claimed_at = now
    if dispute.status in QUEUE_STATUSES:
        dispute.queue_due_at = (
            dispute.first_response_due if dispute.first_claimed_at is None else dispute.resolution_due
        )
    else:
        dispute.queue_due_at = None


async def most_urgent(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    assignee_id: str | None,
    priority: str | None,
    seller_id: str | None,
) -> list[Dispute]:
    """Up to ``limit + 1`` queued disputes after ``cursor`` (one more tells that a next page exists), in
    queue order. The index ``ix_disputes_queue`` holds exactly this order."""
    if status is not None and status not in QUEUE_STATUSES:
        raise ValidationFailed("status must be escalated or in_review", field="status")
    query = select(Dispute).where(Dispute.queue_due_at.is_not(None))
    for column, value in (
        (Dispute.status, status),
        (Dispute.assignee_id, assignee_id),
        (Dispute.priority, priority),
        (Dispute.seller_id, seller_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        due, rank, amount, created, last_id = decode_cursor(cursor, (datetime, int, int, datetime, str))
        query = query.where(
            or_(
                Dispute.queue_due_at > due,
                and_(Dispute.queue_due_at == due, Dispute.priority_rank > rank),
                and_(Dispute.queue_due_at == due, Dispute.priority_rank == rank, Dispute.amount < amount),
                and_(
                    Dispute.queue_due_at == due,
                    Dispute.priority_rank == rank,
                    Dispute.amount == amount,
                    or_(Dispute.created_at > created, and_(Dispute.created_at == created, Dispute.id > last_id)),
                ),
            )
        )
    query = query.order_by(
        Dispute.queue_due_at, Dispute.priority_rank, Dispute.amount.desc(), Dispute.created_at, Dispute.id
    ).limit(limit + 1)
    return list((await session.scalars(query)).all())


def cursor_key(dispute: Dispute) -> list[Any]:
    """Where a page of the queue ends (decoded by :func:`most_urgent`, which selects only disputes with a
    ``queue_due_at``)."""
    if dispute.queue_due_at is None:
        raise ValueError(f"dispute {dispute.id} is not in the queue")
    return [
        dispute.queue_due_at.isoformat(),
        dispute.priority_rank,
        dispute.amount,
        dispute.created_at.isoformat(),
        dispute.id,
    ]
