"""The operator queue: which disputes are critical, their SLA, when one is overdue, and the queue order.

A dispute enters the queue when it is escalated and leaves it when it moves on (``queue_due_at`` is set
only in ``escalated`` and ``in_review``). Its SLA is counted from the first escalation, by priority: the
first claim is the operator's first response, the resolution ends it. The queue shows the most urgent
first: the nearest due date (a breached one is in the past, so first), then critical before standard,
then the larger amount, then the older. ``transitions.py`` keeps the SLA columns up to date on every
change; the reads (``service.to_read``) show them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.disputes.models import Dispute
from app.disputes.schemas import Reason, Sla
from app.disputes.workflow import Status
from app.errors import ValidationFailed
from app.schemas import decode_cursor
from app.settings import Settings

CRITICAL_REASONS = frozenset({Reason.NOT_RECEIVED, Reason.DAMAGED, Reason.WRONG_ITEM})
QUEUE_STATUSES = (Status.ESCALATED, Status.IN_REVIEW)
# A resolution ends the SLA clock (a later reopen or appeal does not restart it).
FINISHED = (Status.RESOLVED, Status.CLOSED, Status.RESOLVING)
CRITICAL: Final = "critical"
STANDARD: Final = "standard"


def priority_of(reason: Reason, order_total: int, settings: Settings) -> tuple[str, int]:
    """(priority, rank): critical for a missing, damaged or wrong item or a large order. The rank (0
    critical, 1 standard) is what the queue sorts on."""
    critical = reason in CRITICAL_REASONS or order_total >= settings.dispute_critical_amount
    return (CRITICAL, 0) if critical else (STANDARD, 1)


def sla_of(dispute: Dispute, now: datetime) -> Sla | None:
    """The SLA as shown in a response: its due dates and whether either was missed (or is being missed)."""
    if dispute.first_response_due is None:
        return None
    first = dispute.first_claimed_at or now
    responded_late = first > dispute.first_response_due
    finished = dispute.resolved_at if dispute.status in FINISHED else None
    resolved_late = dispute.resolution_due is not None and (finished or now) > dispute.resolution_due
    return Sla(
        first_response_due=dispute.first_response_due,
        resolution_due=dispute.resolution_due,
        breached=responded_late or resolved_late,
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
