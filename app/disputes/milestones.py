"""When a dispute reached the moments the KPIs measure (app/reports), kept on its row as they happen.

The reports never replay the audit timeline or the messages: each moment is a column set once, in the
transaction that reaches it, by one of three hooks.

- :func:`on_write` (``transitions.write``, every change of status): the first time it was ``resolved``
  (``first_resolved_at``; ``resolved_at`` is cleared by a reopen or an appeal and set again by the next
  resolution), the first resolution after its first escalation (``sla_resolved_at``, which ends the
  operator's SLA), when it closed, who a decision put at fault (the last decision's ``at_fault``), and
  whether a resolution asked the buyer to send the goods back (``return_required``, kept once set).
- :func:`on_action` (``transitions.record``, every action): the first action of the shop or operator
  staff is a first response (``first_response_at``); the first action of operator staff after the first
  escalation is the operator's first response (``first_operator_response_at``, the claim in practice).
- :func:`message_posted` (wired by app/main.py as the threads' ``on_dispute_message``): a message of the
  shop or operator staff in a thread of the dispute that its buyer reads is a first response; one of
  operator staff in any thread of the dispute after the first escalation is the operator's. It runs
  before the thread's row is locked, as conditional UPDATEs: the dispute's row is locked (only when a
  moment is still to be set) before the thread's, the order of the paths that lock a dispute and then post
  in its threads (a promo code's notice, a request for information), so the two never deadlock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import OPERATOR_STAFF, Actor, Role
from app.disputes import workflow
from app.disputes.models import Dispute
from app.disputes.schemas import Resolution
from app.disputes.workflow import Status
from app.threads.messages import DisputeMessage
from app.threads.models import Thread

RESPONDERS = frozenset({Role.SELLER.value, *(r.value for r in OPERATOR_STAFF)})
STAFF = frozenset(r.value for r in OPERATOR_STAFF)
# The audiences of a dispute's threads its buyer reads (docs/api.md, Threads).
BUYER_READS = frozenset({"tripartite", "buyer_seller", "operator_buyer"})


def on_write(dispute: Dispute, change: workflow.Change, now: datetime) -> None:
    """After the change's fields and status are on the row."""
    if change.to_status == Status.RESOLVED:
        if dispute.first_resolved_at is None:
            dispute.first_resolved_at = now
        if dispute.first_escalated_at is not None and dispute.sla_resolved_at is None:
            dispute.sla_resolved_at = now
    if change.to_status == Status.CLOSED and dispute.closed_at is None:
        dispute.closed_at = now
    resolution = change.fields.get("resolution")
    if isinstance(resolution, Resolution):
        dispute.return_required = bool(dispute.return_required) or resolution.return_required
        if "decided_by" in change.fields:  # only a decision names a decider (workflow.DECIDE)
            dispute.at_fault = resolution.at_fault


def on_action(dispute: Dispute, actor: Actor, now: datetime) -> None:
    """After the action's change is written (so a first escalation is already on the row)."""
    role = actor.role.value
    if role in RESPONDERS and dispute.first_response_at is None:
        dispute.first_response_at = now
    if role in STAFF and dispute.first_escalated_at is not None and dispute.first_operator_response_at is None:
        dispute.first_operator_response_at = now


async def message_posted(session: AsyncSession, message: DisputeMessage) -> None:
    """A message is being posted in a thread (in the posting transaction, before the thread's row lock):
    nothing for a buyer's message; for a responder's, the moments its dispute (if any) still lacks."""
    if message.author_role not in RESPONDERS:
        return
    of_thread = select(Thread.dispute_id).where(Thread.id == message.thread_id)
    await session.execute(
        update(Dispute)
        .where(
            Dispute.id == of_thread.where(Thread.audience.in_(BUYER_READS)).scalar_subquery(),
            Dispute.first_response_at.is_(None),
        )
        .values(first_response_at=message.at)
        .execution_options(synchronize_session=False)
    )
    if message.author_role in STAFF:
        await session.execute(
            update(Dispute)
            .where(
                Dispute.id == of_thread.scalar_subquery(),
                Dispute.first_escalated_at.is_not(None),
                Dispute.first_operator_response_at.is_(None),
            )
            .values(first_operator_response_at=message.at)
            .execution_options(synchronize_session=False)
        )
