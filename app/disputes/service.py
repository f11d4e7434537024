"""Disputes: open, read, act, rate. The rules of who moves what where live in workflow.py.

Every action runs in the request's transaction: lock the dispute row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite's write lock is taken at BEGIN), ask the workflow, and write the change with its audit
event, real-time event and outbound webhooks together (transitions.py). Two simultaneous actions are
serialized by the lock; the second one sees the first one's result (so of eight claims, one wins and
seven get 409).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Role
from app.db import utcnow
from app.disputes import queue, resolution, transitions, workflow
from app.disputes.models import Dispute, DisputeEvent, DisputeLine
from app.disputes.schemas import (
    AcceptClaim,
    ActionBody,
    ConfirmReturn,
    CsatCreate,
    Deadlines,
    Decide,
    DisputeCreate,
    DisputeEventRead,
    DisputeLineIn,
    DisputeRead,
    EventActor,
    MarkReturned,
    Propose,
    Requested,
    RequestInfo,
    Resolution,
)
from app.disputes.workflow import Action, Outcome, Status
from app.errors import BusinessRuleViolation, Conflict, Forbidden, NotFound, ValidationFailed
from app.money import Money
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.orders.service import resource_of as order_resource
from app.paging import newest_first_key, next_cursor, older_than, window
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, may_ever
from app.permissions.visibility import visible_resources
from app.schemas import Page, decode_cursor
from app.sellers.models import Seller
from app.settings import Settings
from app.threads import service as threads
from app.threads.rules import clean_body
from app.threads.schemas import Audience


def resource_of(dispute: Dispute) -> Resource:
    return Resource(kind="dispute", buyer_id=dispute.buyer_id, seller_id=dispute.seller_id)


# --- reading --------------------------------------------------------------------------------------------


def to_read(
    dispute: Dispute, lines: list[DisputeLineIn], actor: Actor, settings: Settings, now: datetime
) -> DisputeRead:
    """The dispute as this caller may see it: the parts the policy keeps from it are left out."""
    status = Status(dispute.status)
    timing = transitions.timing_of(settings)
    allowed = workflow.allowed_actions(transitions.state_of(dispute), actor, now, timing)
    view = disclosure.view_of(actor, buyer_id=dispute.buyer_id, seller_id=dispute.seller_id)
    reopen_until = (
        dispute.resolved_at + timedelta(seconds=settings.reopen_window_seconds)
        if status == Status.RESOLVED and dispute.resolved_at is not None
        else None
    )
    return DisputeRead(
        dispute_id=dispute.id,
        order_id=dispute.order_id,
        buyer_id=dispute.buyer_id,
        seller_id=dispute.seller_id,
        status=dispute.status,
        outcome=dispute.outcome,
        reason=dispute.reason,
        requested=dispute.requested,
        amount=Money(dispute.amount, dispute.currency),
        offer=disclosure.terms(view, dispute.offer),
        resolution=disclosure.terms(view, dispute.resolution),
        priority=queue.CRITICAL if dispute.priority == queue.CRITICAL else queue.STANDARD,
        assignee_id=disclosure.assignee_id(view, dispute.assignee_id),
        thread_id=dispute.thread_id,
        lines=lines,
        next_action_by=workflow.next_action_by(status),
        deadlines=Deadlines(respond_by=dispute.respond_by, return_by=dispute.return_by, reopen_until=reopen_until),
        allowed_actions=allowed,
        return_shipment=dispute.return_shipment,
        return_condition=dispute.return_condition,
        sla=queue.sla_of(dispute, now),
        overdue=queue.is_overdue(dispute, now, settings),
        refund_failed=bool(dispute.refund_failed),
        created_at=dispute.created_at,
        updated_at=dispute.updated_at,
    )


async def _lines_of(session: AsyncSession, dispute_ids: list[str]) -> dict[str, list[DisputeLineIn]]:
    found: dict[str, list[DisputeLineIn]] = defaultdict(list)
    if not dispute_ids:
        return found
    rows = await session.execute(
        select(DisputeLine.dispute_id, DisputeLine.line_id, DisputeLine.quantity)
        .where(DisputeLine.dispute_id.in_(dispute_ids))
        .order_by(DisputeLine.dispute_id, DisputeLine.line_id)
    )
    for dispute_id, line_id, quantity in rows.all():
        found[dispute_id].append(DisputeLineIn(line_id=line_id, quantity=quantity))
    return found


async def _load(session: AsyncSession, actor: Actor, dispute_id: str, *, lock: bool = False) -> Dispute:
    dispute = await session.get(Dispute, dispute_id, with_for_update=lock or None, populate_existing=lock)
    if dispute is None or not is_allowed(actor, resource_of(dispute), "read"):
        raise NotFound(f"dispute {dispute_id!r} does not exist")
    return dispute


async def get_dispute(session: AsyncSession, *, actor: Actor, dispute_id: str, settings: Settings) -> DisputeRead:
    dispute = await _load(session, actor, dispute_id)
    lines = await _lines_of(session, [dispute.id])
    return to_read(dispute, lines[dispute.id], actor, settings, utcnow())


def _visible(actor: Actor) -> Any:
    return visible_resources(
        actor,
        kind=literal("dispute"),
        buyer_id=Dispute.buyer_id,
        seller_id=Dispute.seller_id,
        kinds={"dispute": "dispute"},
    )


async def list_disputes(
    session: AsyncSession,
    *,
    actor: Actor,
    settings: Settings,
    limit: int,
    cursor: str | None,
    status: str | None,
    seller_id: str | None,
    assignee_id: str | None,
    order_id: str | None,
) -> Page[DisputeRead]:
    if assignee_id is not None and not may_ever(actor, "staff_ids", "read"):
        # Filtering by a staff id would tell who holds which dispute: the same rule as showing it.
        raise Forbidden("you may not filter disputes by assignee_id")
    query = select(Dispute).where(_visible(actor))
    for column, value in (
        (Dispute.status, status),
        (Dispute.seller_id, seller_id),
        (Dispute.assignee_id, assignee_id),
        (Dispute.order_id, order_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        query = query.where(older_than(cursor, Dispute.created_at, Dispute.id))
    rows = list(
        (await session.scalars(query.order_by(Dispute.created_at.desc(), Dispute.id.desc()).limit(limit + 1))).all()
    )
    return await _page(session, rows, limit, actor, settings, newest_first_key)


async def _page(
    session: AsyncSession, rows: list[Dispute], limit: int, actor: Actor, settings: Settings, key: Any
) -> Page[DisputeRead]:
    shown, more = window(rows, limit)
    lines = await _lines_of(session, [d.id for d in shown])
    now = utcnow()
    items = [to_read(d, lines[d.id], actor, settings, now) for d in shown]
    return Page(items=items, next_cursor=next_cursor(shown, more, key))


async def list_queue(
    session: AsyncSession,
    *,
    actor: Actor,
    settings: Settings,
    limit: int,
    cursor: str | None,
    status: str | None,
    assignee_id: str | None,
    priority: str | None,
    seller_id: str | None,
) -> Page[DisputeRead]:
    """Escalated and in-review disputes, most urgent first (queue.py says what that means)."""
    if not is_allowed(actor, Resource(kind="dispute_queue"), "read"):
        raise Forbidden("the dispute queue is for operator staff")
    rows = await queue.most_urgent(
        session,
        limit=limit,
        cursor=cursor,
        status=status,
        assignee_id=assignee_id,
        priority=priority,
        seller_id=seller_id,
    )
    return await _page(session, rows, limit, actor, settings, queue.cursor_key)


async def list_events(
    session: AsyncSession, *, actor: Actor, dispute_id: str, limit: int, cursor: str | None
) -> Page[DisputeEventRead]:
    dispute = await _load(session, actor, dispute_id)
    view = disclosure.view_of(actor, buyer_id=dispute.buyer_id, seller_id=dispute.seller_id)
    query = select(DisputeEvent).where(DisputeEvent.dispute_id == dispute_id)
    if cursor is not None:
        (after,) = decode_cursor(cursor, (int,))
        query = query.where(DisputeEvent.id > after)
    rows, more = window((await session.scalars(query.order_by(DisputeEvent.id).limit(limit + 1))).all(), limit)
    items = [
        DisputeEventRead(
            event_id=e.id,
            actor=EventActor(
                id=disclosure.staff_id(view, e.actor_role, e.actor_id), role=e.actor_role, name=e.actor_name
            ),
            action=e.action,
            from_status=e.from_status,
            to_status=e.to_status,
            data=disclosure.audit_data(view, e.action, e.actor_role, e.data),
            at=e.at,
        )
        for e in rows
    ]
    return Page(items=items, next_cursor=next_cursor(rows, more, lambda e: (e.id,)))


# --- opening --------------------------------------------------------------------------------------------


async def open_dispute(session: AsyncSession, *, actor: Actor, data: DisputeCreate, settings: Settings) -> DisputeRead:
    # The order row lock serializes openings on the same order: "one open dispute per line" holds
    # even when the buyer double-clicks.
    order = await session.get(Order, data.order_id, with_for_update=True, populate_existing=True)
    if order is None or not is_allowed(actor, order_resource(order), "read"):
        raise NotFound(f"order {data.order_id!r} does not exist")
    if not is_allowed(actor, Resource(kind="dispute", buyer_id=order.buyer_id, seller_id=order.seller_id), "open"):
        raise Forbidden("only the order's buyer may open a dispute about it")

    by_line = {line.line_id: line for line in order.lines}
    if data.lines:
        wanted: dict[str, int] = {}
        for index, line in enumerate(data.lines):
            known = by_line.get(line.line_id)
            if known is None:
                raise ValidationFailed(f"order has no line {line.line_id!r}", field=f"lines[{index}].line_id")
            if line.line_id in wanted:
                raise ValidationFailed(f"line {line.line_id!r} appears twice", field=f"lines[{index}].line_id")
            if line.quantity > known.quantity:
                raise ValidationFailed(
                    f"line {line.line_id!r} has {known.quantity} items, not {line.quantity}",
                    field=f"lines[{index}].quantity",
                )
            wanted[line.line_id] = line.quantity
    else:
        wanted = {line.line_id: line.quantity for line in order.lines}
    amount = sum(by_line[line_id].unit_price_amount * qty for line_id, qty in wanted.items())

    busy = await session.scalars(
        select(DisputeLine.line_id)
        .join(Dispute, Dispute.id == DisputeLine.dispute_id)
        .where(
            DisputeLine.order_id == order.id,
            DisputeLine.line_id.in_(list(wanted)),
            Dispute.status != Status.CLOSED.value,
        )
    )
    taken = sorted(set(busy.all()))
    if taken:
        raise Conflict(
            f"a dispute is already open for line(s) {', '.join(taken)} of this order",
            code="dispute.already_open",
            line_ids=taken,
        )

    requested = data.requested
    resolution.check_requested(requested, currency=order.currency, disputed=amount)

    now = utcnow()
    priority, priority_rank = queue.priority_of(data.reason, order.total_amount, settings)
    dispute_id = f"dsp_{uuid.uuid4().hex}"
    thread = await threads.create_thread(
        session,
        actor=actor,
        audience=Audience.TRIPARTITE,
        subject=f"Dispute about order {order.id}: {data.reason.value.replace('_', ' ')}",
        body=data.description,
        order_id=order.id,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        dispute_id=dispute_id,
    )
    dispute = Dispute(
        id=dispute_id,
        order_id=order.id,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        status=Status.OPEN.value,
        reason=data.reason.value,
        requested=msgspec.to_builtins(requested),
        currency=order.currency,
        amount=amount,
        priority=priority,
        priority_rank=priority_rank,
        thread_id=thread.thread_id,
        respond_by=now + timedelta(seconds=settings.seller_response_seconds),
        appealed=False,
        reopened=False,
        refund_failed=False,
        created_at=now,
        updated_at=now,
    )
    session.add(dispute)
    await session.flush()
    session.add_all(
        [DisputeLine(dispute_id=dispute_id, line_id=k, order_id=order.id, quantity=v) for k, v in wanted.items()]
    )
    if order.escrow_status == EscrowStatus.HELD.value:
        order.escrow_status = EscrowStatus.FROZEN.value
    await transitions.record(
        session,
        dispute,
        actor=actor,
        action="open",
        from_status=None,
        data={"reason": data.reason.value, "requested": dispute.requested, "lines": wanted},
        now=now,
    )
    return to_read(dispute, [DisputeLineIn(line_id=k, quantity=v) for k, v in wanted.items()], actor, settings, now)


# --- acting ---------------------------------------------------------------------------------------------


async def act(
    session: AsyncSession, *, actor: Actor, dispute_id: str, body: ActionBody, settings: Settings
) -> DisputeRead:
    dispute = await _load(session, actor, dispute_id, lock=True)
    action = Action(str(type(body).__struct_config__.tag))
    now = utcnow()
    # Only mark_returned depends on the shop's settings (when refunds are paid): skip the round trip for
    # the others (a claim is the hot path of the operator queue). The budget is read where it is checked.
    needs_shop = action == Action.MARK_RETURNED
    seller = await session.get(Seller, dispute.seller_id) if needs_shop else None
    state = transitions.state_of(dispute, seller.refund_on if seller is not None else "receipt")
    timing = transitions.timing_of(settings)
    try:
        workflow.check(state, action, actor, now=now, timing=timing)
        payload = await _payload(session, dispute, actor, body, settings)
        change = workflow.apply(state, action, actor, now=now, timing=timing, payload=payload)
    except workflow.NotYourAction as exc:
        raise Forbidden(str(exc)) from None
    except workflow.AlreadyClaimed as exc:
        raise Conflict(str(exc), code="dispute.already_claimed", assignee_id=exc.assignee_id) from None
    except workflow.InvalidTransition as exc:
        raise Conflict(
            f"{exc}; allowed now: {', '.join(exc.allowed) or 'nothing'}",
            code="dispute.invalid_transition",
            dispute_status=exc.status.value,  # not `status`: RFC 9457 reserves it for the HTTP status
            allowed_actions=exc.allowed,
        ) from None
    except workflow.RuleViolation as exc:
        raise BusinessRuleViolation(str(exc), code=exc.code) from None

    if isinstance(body, RequestInfo):
        payload = await _ask(session, dispute, actor, body)
    # The decision of an appeal (an appeal excludes the arbitrator it appeals against until then).
    appeal_decided = action == Action.DECIDE and dispute.excluded_arbitrator is not None
    from_status = await transitions.write(session, dispute, change, now=now, settings=settings)
    # A money resolution becomes its refund, credit note or promo code in this transaction, before the
    # change is announced (the refund's events come first).
    granted = None
    if transitions.enters_resolving(from_status, change):
        granted = await resolution.grant_resolution_refund(session, dispute, actor=actor, settings=settings)
    if appeal_decided:
        await resolution.reallocate_appeal(session, dispute, payload["resolution"], now=now)
    await transitions.record(
        session, dispute, actor=actor, action=action.value, from_status=from_status, data=payload, now=now
    )
    if granted is not None and resolution.settled_at_once(granted):
        await resolution.resolve_at_once(session, dispute, granted, now=now, settings=settings)
    lines = await _lines_of(session, [dispute.id])
    return to_read(dispute, lines[dispute.id], actor, settings, now)


async def _payload(
    session: AsyncSession, dispute: Dispute, actor: Actor, body: ActionBody, settings: Settings
) -> dict[str, Any]:
    """The action's fields, validated against the order's money (amounts, currency, the caller's limit).
    A resolution in it is the checked :class:`Resolution` (the workflow reads it; the audit stores its JSON)."""
    payload: dict[str, Any] = {k: v for k, v in msgspec.to_builtins(body).items() if k != "action"}
    if isinstance(body, Propose | Decide):
        if isinstance(body, Decide) and body.resolution.at_fault is None:
            raise ValidationFailed("a decision must say who is at fault", field="resolution.at_fault")
        payload["resolution"] = await resolution.check_resolution(session, dispute, actor, body.resolution, settings)
    elif isinstance(body, AcceptClaim):
        # The seller grants what the buyer asked for, from its own funds.
        requested = msgspec.convert(dispute.requested, Requested)
        claimed = Resolution(
            type=requested.type,
            amount=requested.amount,
            return_required=body.return_required,
            funded_by="seller",
        )
        payload["resolution"] = await resolution.check_resolution(session, dispute, actor, claimed, settings)
    elif isinstance(body, MarkReturned | ConfirmReturn):
        payload = {k: v for k, v in payload.items() if v is not None}
    return payload


async def _ask(session: AsyncSession, dispute: Dispute, actor: Actor, body: RequestInfo) -> dict[str, Any]:
    """Post the question in the dispute's private thread with that party, opening it the first time.

    Returns the audit data: a reference to the message, never its text (the timeline is read by the
    other party and finance, who may not read that thread)."""
    audience = Audience.OPERATOR_SELLER if body.party == "seller" else Audience.OPERATOR_BUYER
    message = await threads.post_to_party(
        session,
        actor=actor,
        dispute_id=dispute.id,
        order_id=dispute.order_id,
        audience=audience,
        buyer_id=dispute.buyer_id if body.party == "buyer" else None,
        seller_id=dispute.seller_id if body.party == "seller" else None,
        subject=f"Question about dispute {dispute.id}",
        body=clean_body(body.question, field="question"),
    )
    return {"party": body.party, "thread_id": message.thread_id, "message_id": message.message_id}


# --- satisfaction ---------------------------------------------------------------------------------------


async def rate(
    session: AsyncSession, *, actor: Actor, dispute_id: str, data: CsatCreate, settings: Settings
) -> DisputeRead:
    dispute = await _load(session, actor, dispute_id, lock=True)
    if actor.role != Role.BUYER or actor.id != dispute.buyer_id:
        raise Forbidden("only the dispute's buyer rates its handling")
    settled = dispute.status == Status.RESOLVED or (
        dispute.status == Status.CLOSED and dispute.outcome in (Outcome.RESOLVED, Outcome.DENIED)
    )
    if not settled:
        raise Conflict("a dispute is rated once it is resolved", code="dispute.not_resolved")
    if dispute.csat_score is not None:
        raise Conflict("this dispute has already been rated", code="dispute.already_rated")
    now = utcnow()
    dispute.csat_score = data.score
    dispute.csat_comment = data.comment
    dispute.updated_at = now
    # On the timeline only: a rating changes no status and announces nothing.
    session.add(
        transitions.audit_event(
            dispute,
            actor=actor,
            action="csat",
            from_status=dispute.status,
            data={"score": data.score, "comment": data.comment},
            now=now,
        )
    )
    lines = await _lines_of(session, [dispute.id])
    return to_read(dispute, lines[dispute.id], actor, settings, now)
