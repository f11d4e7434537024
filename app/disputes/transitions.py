"""The one writer of a dispute's change: the row, its audit event, its real-time event, its webhooks.

``workflow.py`` decides what an action does (a :class:`workflow.Change`); this module writes it, in the
caller's transaction, with the dispute row locked by the caller. A change is written in two steps that
every caller takes in this order:

1. :func:`write` sets the row: the change's fields, status and outcome, the SLA columns, and frees the
   order's escrow when the last open dispute on it closes.
2. :func:`record` announces it: the audit event (``dispute_events``), ``dispute.updated`` on the event
   log, and the outbound webhooks (docs/webhooks.md), all in the same transaction.

:func:`apply_change` takes both steps. The one caller that does something between them is an action that
commits money (``service.act``): the resolution's refund is granted after the row is written and before
the change is announced (``resolution.py``). Nothing here calls itself or hides a second change: a
follow-up change (a credit note settles at once) is the caller's, through :func:`apply_system_action`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import SYSTEM_ACTOR, Actor, Role
from app.disputes import queue, workflow
from app.disputes.models import Dispute, DisputeEvent
from app.disputes.schemas import Resolution
from app.disputes.workflow import Action, Status, Timing
from app.events import service as events
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.settings import Settings
from app.webhooks import service as webhooks

# The audit timeline has always named the service "System" (the author of its messages is shown as
# SYSTEM_ACTOR.name): stored events and clients rely on it.
SYSTEM_NAME = "System"


def timing_of(settings: Settings) -> dict[Timing, int]:
    return {
        Timing.SELLER_RESPONSE: settings.seller_response_seconds,
        Timing.BUYER_RESPONSE: settings.buyer_response_seconds,
        Timing.RETURN: settings.return_seconds,
        Timing.REOPEN_WINDOW: settings.reopen_window_seconds,
    }


def resolution_of(column: dict[str, Any] | None) -> Resolution | None:
    """An ``offer`` or ``resolution`` column as the Struct it was stored from (the JSON stays as written)."""
    return None if column is None else msgspec.convert(column, Resolution)


def state_of(dispute: Dispute, refund_on: str = "receipt") -> workflow.DisputeState:
    """What the workflow needs of the row. ``refund_on`` is the shop's setting (read only when needed)."""
    return workflow.DisputeState(
        status=Status(dispute.status),
        buyer_id=dispute.buyer_id,
        seller_id=dispute.seller_id,
        assignee_id=dispute.assignee_id,
        offer=resolution_of(dispute.offer),
        resolution=resolution_of(dispute.resolution),
        refund_on=refund_on,
        resolved_at=dispute.resolved_at,
        decided_by=dispute.decided_by,
        appealed=dispute.appealed,
        reopened=dispute.reopened,
        excluded_arbitrator=dispute.excluded_arbitrator,
    )


def enters_resolving(from_status: str, change: workflow.Change) -> bool:
    """The change hands a money resolution to the refunds: its refund is granted now."""
    return change.to_status == Status.RESOLVING and from_status != Status.RESOLVING


# --- 1. the row -----------------------------------------------------------------------------------------


def _column(value: Any) -> Any:
    """A change's field as its column holds it: an offer or resolution as its JSON."""
    return msgspec.to_builtins(value) if isinstance(value, Resolution) else value


async def write(
    session: AsyncSession, dispute: Dispute, change: workflow.Change, *, now: datetime, settings: Settings
) -> str:
    """Set the change on the (locked) row; returns the status it had."""
    from_status = dispute.status
    for name, value in change.fields.items():
        setattr(dispute, name, _column(value))
    dispute.status = change.to_status.value
    if change.outcome is not None:
        dispute.outcome = change.outcome.value
    if change.to_status == Status.RESOLVED and dispute.resolved_at is None:
        dispute.resolved_at = now
    queue.update_sla(dispute, settings, now)
    dispute.updated_at = now
    was_settled, is_settled = from_status in SETTLED, change.to_status in SETTLED
    if is_settled != was_settled:
        await _follow_escrow(session, dispute, frozen=not is_settled)
    return from_status


# A dispute freezes its order's escrow while it is in a status before `resolved` (docs/api.md): reaching
# `resolved` (or `closed`) lets the release go on; a reopen or an appeal freezes it again, unless the
# escrow was released meanwhile (then a new decision recovers through reversals, app/payouts/reversals.py).
SETTLED = frozenset({Status.RESOLVED.value, Status.CLOSED.value})


async def _follow_escrow(session: AsyncSession, dispute: Dispute, *, frozen: bool) -> None:
    # The order's row is locked and read afresh: the release job may have released it a moment ago, and a
    # stale `held` written back would undo that.
    order = await session.scalar(
        select(Order).where(Order.id == dispute.order_id).with_for_update().execution_options(populate_existing=True)
    )
    if order is None:
        return
    if frozen:
        if order.escrow_status == EscrowStatus.HELD.value:
            order.escrow_status = EscrowStatus.FROZEN.value
        return
    unsettled = await session.scalar(
        select(func.count())
        .select_from(Dispute)
        .where(Dispute.order_id == dispute.order_id, Dispute.id != dispute.id, Dispute.status.not_in(SETTLED))
    )
    if not unsettled and order.escrow_status == EscrowStatus.FROZEN.value:
        order.escrow_status = EscrowStatus.HELD.value


# --- 2. the announcements -------------------------------------------------------------------------------


def webhook_types(action: str, from_status: str | None, to_status: str) -> list[str]:
    """The outbound event types (docs/webhooks.md) a transition announces."""
    types = {
        "open": ["dispute.opened"],
        Action.DECIDE.value: ["dispute.decided"],
        Action.MARK_RETURNED.value: ["return.shipped"],
        Action.CONFIRM_RETURN.value: ["return.received"],
    }.get(action, [])
    if to_status == Status.ESCALATED and from_status != Status.ESCALATED:
        types.append("dispute.escalated")
    if to_status == Status.CLOSED:
        types.append("dispute.closed")
    return types or ["dispute.updated"]


def audit_event(
    dispute: Dispute,
    *,
    actor: Actor,
    action: str,
    from_status: str | None,
    data: dict[str, Any],
    now: datetime,
) -> DisputeEvent:
    """One row of the timeline. ``data`` is stored as JSON (a Resolution in it as its fields)."""
    return DisputeEvent(
        dispute_id=dispute.id,
        actor_id=actor.id,
        actor_role=actor.role.value,
        actor_name=SYSTEM_NAME if actor.role == Role.SYSTEM else actor.name or actor.id,
        action=action,
        from_status=from_status,
        to_status=dispute.status,
        data=msgspec.to_builtins(data),
        at=now,
    )


async def record(
    session: AsyncSession,
    dispute: Dispute,
    *,
    actor: Actor,
    action: str,
    from_status: str | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """The audit event, the real-time event and the outbound webhooks of one transition, in its transaction."""
    session.add(audit_event(dispute, actor=actor, action=action, from_status=from_status, data=data, now=now))
    summary = {
        "dispute_id": dispute.id,
        "order_id": dispute.order_id,
        "seller_id": dispute.seller_id,
        "buyer_id": dispute.buyer_id,
        "action": action,
        "from_status": from_status,
        "status": dispute.status,
        "outcome": dispute.outcome,
        "priority": dispute.priority,
        "assignee_id": dispute.assignee_id,
        "next_action_by": workflow.next_action_by(Status(dispute.status)),
        "actor": {"id": actor.id, "role": actor.role.value},
        "at": now.isoformat(),
    }
    await events.append(
        session,
        type="dispute.updated",
        kind="dispute",
        buyer_id=dispute.buyer_id,
        seller_id=dispute.seller_id,
        thread_id=None,
        actor=actor.id,
        payload=summary,
        now=now,
    )
    for event_type in webhook_types(action, from_status, dispute.status):
        decided = event_type == "dispute.decided"
        await webhooks.enqueue(
            session,
            event_type=event_type,
            data={**summary, "resolution": dispute.resolution} if decided else summary,
            now=now,
        )


# --- both steps -----------------------------------------------------------------------------------------


async def apply_change(
    session: AsyncSession,
    dispute: Dispute,
    change: workflow.Change,
    *,
    actor: Actor,
    action: str,
    data: dict[str, Any],
    now: datetime,
    settings: Settings,
) -> None:
    """Write a change that commits no money and announce it."""
    from_status = await write(session, dispute, change, now=now, settings=settings)
    await record(session, dispute, actor=actor, action=action, from_status=from_status, data=data, now=now)


async def apply_system_action(
    session: AsyncSession, dispute: Dispute, action: Action, *, data: dict[str, Any], now: datetime, settings: Settings
) -> None:
    """A timer or a settled refund moves the (locked) dispute on, as the service itself."""
    change = workflow.apply(state_of(dispute), action, SYSTEM_ACTOR, now=now, timing=timing_of(settings))
    await apply_change(
        session, dispute, change, actor=SYSTEM_ACTOR, action=action.value, data=data, now=now, settings=settings
    )
