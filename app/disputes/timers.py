"""Dispute timers: the deadlines the worker fires (app/worker.py, job ``dispute-timers``).

Each timer is a system action of the workflow taken when a deadline column of a dispute in one status
has passed: the shop did not answer, the buyer did not answer an offer, the return was not shipped, the
reopen window of a resolved dispute is over. The indexes ``ix_disputes_status_*`` serve these queries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.disputes import transitions
from app.disputes.models import Dispute
from app.disputes.workflow import Action, Status
from app.settings import Settings


def due_timers(settings: Settings, now: datetime) -> list[tuple[Action, Status, Any, datetime]]:
    """(system action, status, deadline column, fire when the column is at or before this)."""
    return [
        (Action.SELLER_TIMEOUT, Status.OPEN, Dispute.respond_by, now),
        (Action.BUYER_TIMEOUT, Status.AWAITING_BUYER, Dispute.respond_by, now),
        (Action.RETURN_TIMEOUT, Status.AWAITING_RETURN, Dispute.return_by, now),
        (
            Action.CLOSE_RESOLVED,
            Status.RESOLVED,
            Dispute.resolved_at,
            now - timedelta(seconds=settings.reopen_window_seconds),
        ),
    ]


async def fire_due_timers(
    session: AsyncSession, *, settings: Settings, now: datetime | None = None, batch: int = 200
) -> int:
    """Apply every due timer as the ``system`` actor. Rows another worker holds are skipped (SKIP
    LOCKED), and a fired dispute no longer matches its timer's status: no timer fires twice."""
    now = now or utcnow()
    fired = 0
    for action, status, column, limit_at in due_timers(settings, now):
        rows = await session.scalars(
            select(Dispute)
            .where(Dispute.status == status.value, column.is_not(None), column <= limit_at)
            .order_by(column)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        for dispute in rows.all():
            deadline = getattr(dispute, column.key)
            await transitions.apply_system_action(
                session,
                dispute,
                action,
                data={"deadline": deadline.isoformat() if deadline else None},
                now=now,
                settings=settings,
            )
            fired += 1
    return fired
