"""Disputes: open, read, act, queue, timers. The rules of who moves what where live in workflow.py.

Every action runs in the request's transaction: lock the dispute row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite's write lock is taken at BEGIN), ask the workflow, write the change, its audit event,
its real-time event and its outbound webhooks together. Two simultaneous actions are serialized by the
lock; the second one sees the first one's result (so of eight claims, one wins and seven get 409).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Role
from app.db import utcnow
from app.disputes import workflow
from app.disputes.models import Dispute, DisputeEvent, DisputeLine
from app.disputes.promo_notice import tell_buyer
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
    RequestInfo,
    Resolution,
    ResolutionType,
    Sla,
)
from app.disputes.workflow import Action, Caller, Status, Timing
from app.errors import BusinessRuleViolation, Conflict, Forbidden, NotFound, ValidationFailed
from app.events import service as events
from app.ledger.views import order_money
from app.money import Money, require_currency
from app.orders.models import Order
from app.orders.schemas import EscrowStatus
from app.orders.service import resource_of as order_resource
from app.payouts import refunds, rules
from app.payouts import service as payouts
from app.payouts.models import Refund
from app.payouts.schemas import RefundCreate, RefundKind, RefundRead
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, may_ever
from app.permissions.visibility import visible_resources
from app.schemas import Page, decode_cursor, encode_cursor
from app.sellers.models import Seller
from app.settings import Settings
from app.threads import service as threads
from app.threads.rules import clean_body
from app.threads.schemas import Audience
from app.webhooks import service as webhooks

CRITICAL_REASONS = frozenset({"not_received", "damaged", "wrong_item"})
QUEUE_STATUSES = (Status.ESCALATED.value, Status.IN_REVIEW.value)


def timing_of(settings: Settings) -> dict[Timing, int]:
    return {
        Timing.SELLER_RESPONSE: settings.seller_response_seconds,
        Timing.BUYER_RESPONSE: settings.buyer_response_seconds,
        Timing.RETURN: settings.return_seconds,
        Timing.REOPEN_WINDOW: settings.reopen_window_seconds,
    }


def resource_of(dispute: Dispute) -> Resource:
    return Resource(kind="dispute", buyer_id=dispute.buyer_id, seller_id=dispute.seller_id)


def caller_of(actor: Actor) -> Caller:
    return Caller(id=actor.id, role=actor.role.value, seller_id=actor.seller_id)


def state_of(dispute: Dispute, refund_on: str = "receipt") -> workflow.DisputeState:
    return workflow.DisputeState(
        status=Status(dispute.status),
        buyer_id=dispute.buyer_id,
        seller_id=dispute.seller_id,
        assignee_id=dispute.assignee_id,
        assignee_role=dispute.assignee_role,
        offer=dispute.offer,
        resolution=dispute.resolution,
        refund_on=refund_on,
        resolved_at=dispute.resolved_at,
        decided_by=dispute.decided_by,
        appealed=dispute.appealed,
        reopened=dispute.reopened,
        excluded_arbitrator=dispute.excluded_arbitrator,
    )


# --- reading --------------------------------------------------------------------------------------------


def _sla(dispute: Dispute, now: datetime) -> Sla | None:
    if dispute.first_response_due is None:
        return None
    first = dispute.first_claimed_at or now
    responded_late = first > dispute.first_response_due
    finished = dispute.resolved_at if dispute.status in ("resolved", "closed", "resolving") else None
    resolved_late = dispute.resolution_due is not None and (finished or now) > dispute.resolution_due
    return Sla(
        first_response_due=dispute.first_response_due,
        resolution_due=dispute.resolution_due,
        breached=responded_late or resolved_late,
    )


def _overdue(dispute: Dispute, now: datetime, settings: Settings) -> bool:
    return (
        dispute.status == Status.ESCALATED
        and dispute.assignee_id is None
        and dispute.escalated_at is not None
        and now - dispute.escalated_at > timedelta(seconds=settings.queue_overdue_seconds)
    )


def to_read(
    dispute: Dispute, lines: list[DisputeLineIn], actor: Actor, settings: Settings, now: datetime
) -> DisputeRead:
    """The dispute as this caller may see it: the parts the policy keeps from it are left out."""
    status = Status(dispute.status)
    timing = timing_of(settings)
    allowed = workflow.allowed_actions(state_of(dispute), caller_of(actor), now, timing)
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
        priority="critical" if dispute.priority == "critical" else "standard",
        assignee_id=disclosure.assignee_id(view, dispute.assignee_id),
        thread_id=dispute.thread_id,
        lines=lines,
        next_action_by=workflow.next_action_by(status),
        deadlines=Deadlines(respond_by=dispute.respond_by, return_by=dispute.return_by, reopen_until=reopen_until),
        allowed_actions=allowed,
        return_shipment=dispute.return_shipment,
        return_condition=dispute.return_condition,
        sla=_sla(dispute, now),
        overdue=_overdue(dispute, now, settings),
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
        at, last_id = decode_cursor(cursor, (datetime, str))
        query = query.where(or_(Dispute.created_at < at, and_(Dispute.created_at == at, Dispute.id < str(last_id))))
    rows = list(
        (await session.scalars(query.order_by(Dispute.created_at.desc(), Dispute.id.desc()).limit(limit + 1))).all()
    )
    return await _page(session, rows, limit, actor, settings, lambda d: [d.created_at.isoformat(), d.id])


async def _page(
    session: AsyncSession, rows: list[Dispute], limit: int, actor: Actor, settings: Settings, key: Any
) -> Page[DisputeRead]:
    more = len(rows) > limit
    rows = rows[:limit]
    lines = await _lines_of(session, [d.id for d in rows])
    now = utcnow()
    items = [to_read(d, lines[d.id], actor, settings, now) for d in rows]
    return Page(items=items, next_cursor=encode_cursor(*key(rows[-1])) if more and rows else None)


async def queue(
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
    """Escalated and in-review disputes, most urgent first: the nearest SLA due date (a breached one is
    in the past, so first), then critical before standard, then the larger amount, then the older."""
    if not is_allowed(actor, Resource(kind="dispute_queue"), "read"):
        raise Forbidden("the dispute queue is for operator staff")
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
    rows = list((await session.scalars(query)).all())

    def key(d: Dispute) -> list[Any]:
        assert d.queue_due_at is not None
        return [d.queue_due_at.isoformat(), d.priority_rank, d.amount, d.created_at.isoformat(), d.id]

    return await _page(session, rows, limit, actor, settings, key)


async def list_events(
    session: AsyncSession, *, actor: Actor, dispute_id: str, limit: int, cursor: str | None
) -> Page[DisputeEventRead]:
    dispute = await _load(session, actor, dispute_id)
    view = disclosure.view_of(actor, buyer_id=dispute.buyer_id, seller_id=dispute.seller_id)
    query = select(DisputeEvent).where(DisputeEvent.dispute_id == dispute_id)
    if cursor is not None:
        (after,) = decode_cursor(cursor, (int,))
        query = query.where(DisputeEvent.id > after)
    rows = list((await session.scalars(query.order_by(DisputeEvent.id).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
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
    return Page(items=items, next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


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
    if requested.amount is not None and requested.amount.currency != order.currency:
        raise BusinessRuleViolation(
            f"requested.amount is in {requested.amount.currency} but the order is in {order.currency}",
            code="money.currency_mismatch",
        )
    if requested.type == ResolutionType.DENY:
        raise ValidationFailed("a buyer cannot request a denial", field="requested.type")
    needs_amount = requested.type in (ResolutionType.REFUND_PARTIAL, ResolutionType.CREDIT, ResolutionType.PROMO_CODE)
    if needs_amount and requested.amount is None:
        raise ValidationFailed(f"a {requested.type} request needs an amount", field="requested.amount")
    if requested.amount is not None and requested.type in workflow.MONEY_TYPES and requested.amount.amount > amount:
        raise BusinessRuleViolation(
            f"requested {requested.amount.amount} is more than the disputed {amount}",
            code="dispute.amount_exceeds_order",
        )

    now = utcnow()
    critical = data.reason.value in CRITICAL_REASONS or order.total_amount >= settings.dispute_critical_amount
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
        priority="critical" if critical else "standard",
        priority_rank=0 if critical else 1,
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
    await _record(
        session,
        dispute,
        who=_who(actor),
        action="open",
        from_status=None,
        data={"reason": data.reason.value, "requested": dispute.requested, "lines": wanted},
        now=now,
    )
    return to_read(dispute, [DisputeLineIn(line_id=k, quantity=v) for k, v in wanted.items()], actor, settings, now)


# --- acting ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Who:
    id: str
    role: str
    name: str


SYSTEM_WHO = Who(id="system", role="system", name="System")


def _who(actor: Actor) -> Who:
    return Who(id=actor.id, role=actor.role.value, name=actor.name or actor.id)


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
    state = state_of(dispute, seller.refund_on if seller is not None else "receipt")
    caller, timing = caller_of(actor), timing_of(settings)
    try:
        workflow.check(state, action, caller, now=now, timing=timing)
        payload = await _payload(session, dispute, actor, body, settings)
        change = workflow.apply(state, action, caller, now=now, timing=timing, payload=payload)
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
    await _apply_change(
        session,
        dispute,
        change,
        who=_who(actor),
        action=action.value,
        data=payload,
        now=now,
        settings=settings,
        actor=actor,
    )
    lines = await _lines_of(session, [dispute.id])
    return to_read(dispute, lines[dispute.id], actor, settings, now)


async def _payload(
    session: AsyncSession, dispute: Dispute, actor: Actor, body: ActionBody, settings: Settings
) -> dict[str, Any]:
    """The action's fields, validated against the order's money (amounts, currency, the caller's limit)."""
    payload: dict[str, Any] = {k: v for k, v in msgspec.to_builtins(body).items() if k != "action"}
    if isinstance(body, Propose | Decide):
        if isinstance(body, Decide) and body.resolution.at_fault is None:
            raise ValidationFailed("a decision must say who is at fault", field="resolution.at_fault")
        payload["resolution"] = await _check_resolution(session, dispute, actor, body.resolution, settings)
    elif isinstance(body, AcceptClaim):
        requested = dispute.requested
        resolution = Resolution(
            type=ResolutionType(requested["type"]),
            amount=Money(**requested["amount"]) if requested.get("amount") else None,
            return_required=body.return_required,
            funded_by="seller",
        )
        payload["resolution"] = await _check_resolution(session, dispute, actor, resolution, settings)
    elif isinstance(body, MarkReturned | ConfirmReturn):
        payload = {k: v for k, v in payload.items() if v is not None}
    return payload


# A dispute's money resolution, as the compensation kind it becomes (app/payouts/rules.py).
COMPENSATION_KIND = {"refund_full": "full", "refund_partial": "partial", "credit": "credit", "promo_code": "promo_code"}
# Where a dispute holds money it committed but has not granted yet: an open offer, an accepted resolution
# waiting for the return. (In ``resolving`` its refund exists; before and after, nothing is committed.)
COMMITTING = (Status.AWAITING_BUYER.value, Status.AWAITING_RETURN.value, Status.RETURN_IN_TRANSIT.value)


async def _check_resolution(
    session: AsyncSession, dispute: Dispute, actor: Actor, resolution: Resolution, settings: Settings
) -> dict[str, Any]:
    """A resolution the caller commits to, checked by the money rules that refunds use: the amount
    against what the dispute can still refund, the funding and the caller's per-order limit (a shop's
    budget, an agent's goodwill limit) against what the order already used, under the order's lock."""
    for name in ("amount", "seller_share"):
        require_currency(getattr(resolution, name), dispute.currency, f"resolution.{name}")
    out: dict[str, Any] = msgspec.to_builtins(resolution)
    kind = COMPENSATION_KIND.get(resolution.type.value)
    if kind is None:
        for name in ("amount", "seller_share", "bonus_percent"):
            if getattr(resolution, name) is not None:
                raise ValidationFailed(f"a {resolution.type} resolution carries no {name}", field=f"resolution.{name}")
        # No money moves; only the funding rule applies (a shop's resolution is the shop's).
        rules.check_grant(
            actor.role.value,
            funded_by=resolution.funded_by,
            grant=rules.NOTHING,
            used=rules.NOTHING,
            budget=None,
            goodwill_limit=0,
        )
        return out
    # The lock makes a concurrent refund or dispute action on this order wait until this one commits.
    await payouts.lock_order(session, dispute.order_id)
    refundable = (await order_money(session, order_id=dispute.order_id)).refundable
    grant = rules.compensation(
        kind,
        amount=resolution.amount,
        funded_by=resolution.funded_by,
        seller_share=resolution.seller_share,
        bonus_percent=resolution.bonus_percent,
        currency=dispute.currency,
        ceiling=min(dispute.amount, refundable),
        field_prefix="resolution.",
    )
    used = await payouts.compensation_on_order(session, order_id=dispute.order_id, currency=dispute.currency)
    used += await committed_on_order(session, dispute.order_id, excluding=dispute.id)
    seller = await session.get(Seller, dispute.seller_id) if actor.role == Role.SELLER else None
    rules.check_grant(
        actor.role.value,
        funded_by=resolution.funded_by,
        grant=grant.split,
        used=used,
        budget=rules.budget_in(
            seller.refund_budget_amount if seller else None,
            seller.refund_budget_currency if seller else None,
            dispute.currency,
        ),
        goodwill_limit=settings.agent_goodwill_limit,
    )
    out["amount"] = {"amount": grant.amount, "currency": dispute.currency}
    return out


async def committed_on_order(session: AsyncSession, order_id: str, *, excluding: str | None = None) -> rules.Split:
    """Money the order's disputes committed but have not granted yet (open offers, resolutions waiting
    for a return), split by who pays it: it counts against the per-order limits like a grant, so an offer
    and a direct refund cannot together pass a shop's budget."""
    rows = await session.execute(
        select(Dispute.id, Dispute.status, Dispute.offer, Dispute.resolution).where(
            Dispute.order_id == order_id, Dispute.status.in_(COMMITTING)
        )
    )
    total = rules.NOTHING
    for dispute_id, status, offer, resolution in rows.all():
        held = offer if status == Status.AWAITING_BUYER.value else resolution
        if dispute_id == excluding or not held or held.get("type") not in COMPENSATION_KIND:
            continue
        share = held.get("seller_share")
        total += rules.split_of(
            held.get("funded_by", "seller"),
            int(held["amount"]["amount"]),
            int(share["amount"]) if share else None,
            held.get("bonus_percent"),
        )
    return total


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


async def _apply_change(
    session: AsyncSession,
    dispute: Dispute,
    change: workflow.Change,
    *,
    who: Who,
    action: str,
    data: dict[str, Any],
    now: datetime,
    settings: Settings,
    actor: Actor | None = None,
) -> None:
    from_status = dispute.status
    for name, value in change.fields.items():
        setattr(dispute, name, value)
    dispute.status = change.to_status.value
    if change.outcome is not None:
        dispute.outcome = change.outcome
    if change.to_status == Status.RESOLVED and dispute.resolved_at is None:
        dispute.resolved_at = now
    _update_sla(dispute, settings, now)
    dispute.updated_at = now
    if change.to_status == Status.CLOSED:
        await _unfreeze_escrow(session, dispute)
    granted = None
    if change.to_status == Status.RESOLVING and from_status != Status.RESOLVING and actor is not None:
        granted = await _grant_resolution_refund(session, dispute, actor, settings)
    await _record(session, dispute, who=who, action=action, from_status=from_status, data=data, now=now)
    if granted is not None and granted.status == "succeeded":
        # A credit note or promo code is settled the moment it is issued: resolve now.
        done = workflow.apply(
            state_of(dispute), Action.REFUND_SUCCEEDED, workflow.SYSTEM, now=now, timing=timing_of(settings)
        )
        settled = {"refund_id": granted.refund_id, "status": granted.status, "kind": granted.kind}
        await _apply_change(
            session,
            dispute,
            done,
            who=SYSTEM_WHO,
            action=Action.REFUND_SUCCEEDED.value,
            data=settled,
            now=now,
            settings=settings,
        )


async def _grant_resolution_refund(
    session: AsyncSession, dispute: Dispute, actor: Actor, settings: Settings
) -> RefundRead | None:
    """A money resolution becomes its refund, credit note or promo code in the same transaction. A
    provider refund is paid by the payouts worker, which then moves the dispute on (``refund_settled``)."""
    resolution = dispute.resolution or {}
    kinds = {
        "refund_full": RefundKind.PARTIAL,
        "refund_partial": RefundKind.PARTIAL,
        "credit": RefundKind.CREDIT,
        "promo_code": RefundKind.PROMO_CODE,
    }
    kind = kinds.get(resolution.get("type", ""))
    if kind is None:
        return None
    amount = int(resolution["amount"]["amount"])
    refundable = (await order_money(session, order_id=dispute.order_id)).refundable
    if kind == RefundKind.PARTIAL and amount == refundable:
        kind = RefundKind.FULL
    previous = await session.scalar(select(func.count()).select_from(Refund).where(Refund.dispute_id == dispute.id))
    seller_share = resolution.get("seller_share")
    return await refunds.grant_refund(
        session,
        actor=actor,
        data=RefundCreate(
            order_id=dispute.order_id,
            kind=kind,
            amount=None if kind == RefundKind.FULL else Money(amount, dispute.currency),
            funded_by=resolution.get("funded_by", "seller"),
            seller_share=Money(**seller_share) if seller_share else None,
            bonus_percent=resolution.get("bonus_percent"),
            reason=f"dispute {dispute.id} ({dispute.reason})",
            dispute_id=dispute.id,
        ),
        # Derived from the dispute and how many refunds it had: the same resolution never pays twice.
        source_key=f"dispute:{dispute.id}:{int(previous or 0) + 1}",
        settings=settings,
        check_role=False,
        promo_issued=tell_buyer,
    )


async def refund_settled(session: AsyncSession, refund: Refund, now: datetime, settings: Settings) -> None:
    """The payouts worker settled a dispute's refund: resolve the dispute, or send it back flagged."""
    if refund.dispute_id is None:
        return
    dispute = await session.get(Dispute, refund.dispute_id, with_for_update=True, populate_existing=True)
    if dispute is None or dispute.status != Status.RESOLVING:
        return
    action = Action.REFUND_SUCCEEDED if refund.status == "succeeded" else Action.REFUND_FAILED
    change = workflow.apply(state_of(dispute), action, workflow.SYSTEM, now=now, timing=timing_of(settings))
    data = {"refund_id": refund.id, "status": refund.status, "failure_reason": refund.failure_reason}
    await _apply_change(
        session, dispute, change, who=SYSTEM_WHO, action=action.value, data=data, now=now, settings=settings
    )


def _update_sla(dispute: Dispute, settings: Settings, now: datetime) -> None:
    if dispute.escalated_at is not None and dispute.first_escalated_at is None:
        critical = dispute.priority == "critical"
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


async def _unfreeze_escrow(session: AsyncSession, dispute: Dispute) -> None:
    """Escrow stays frozen while any other dispute on the order is still open."""
    others = await session.scalar(
        select(func.count())
        .select_from(Dispute)
        .where(Dispute.order_id == dispute.order_id, Dispute.id != dispute.id, Dispute.status != Status.CLOSED.value)
    )
    order = await session.get(Order, dispute.order_id)
    if not others and order is not None and order.escrow_status == EscrowStatus.FROZEN.value:
        order.escrow_status = EscrowStatus.HELD.value


def webhook_types(action: str, from_status: str | None, to_status: str) -> list[str]:
    """The outbound event types (docs/webhooks.md) a transition announces."""
    types = {
        "open": ["dispute.opened"],
        "decide": ["dispute.decided"],
        "mark_returned": ["return.shipped"],
        "confirm_return": ["return.received"],
    }.get(action, [])
    if to_status == Status.ESCALATED and from_status != Status.ESCALATED:
        types.append("dispute.escalated")
    if to_status == Status.CLOSED:
        types.append("dispute.closed")
    return types or ["dispute.updated"]


async def _record(
    session: AsyncSession,
    dispute: Dispute,
    *,
    who: Who,
    action: str,
    from_status: str | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """The audit event, the real-time event and the outbound webhooks of one transition, in its transaction."""
    session.add(
        DisputeEvent(
            dispute_id=dispute.id,
            actor_id=who.id,
            actor_role=who.role,
            actor_name=who.name,
            action=action,
            from_status=from_status,
            to_status=dispute.status,
            data=data,
            at=now,
        )
    )
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
        "actor": {"id": who.id, "role": who.role},
        "at": now.isoformat(),
    }
    await events.append(
        session,
        type="dispute.updated",
        kind="dispute",
        buyer_id=dispute.buyer_id,
        seller_id=dispute.seller_id,
        thread_id=None,
        actor=who.id,
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


# --- satisfaction ---------------------------------------------------------------------------------------


async def rate(
    session: AsyncSession, *, actor: Actor, dispute_id: str, data: CsatCreate, settings: Settings
) -> DisputeRead:
    dispute = await _load(session, actor, dispute_id, lock=True)
    if actor.role != Role.BUYER or actor.id != dispute.buyer_id:
        raise Forbidden("only the dispute's buyer rates its handling")
    settled = dispute.status == Status.RESOLVED or (
        dispute.status == Status.CLOSED and dispute.outcome in ("resolved", "denied")
    )
    if not settled:
        raise Conflict("a dispute is rated once it is resolved", code="dispute.not_resolved")
    if dispute.csat_score is not None:
        raise Conflict("this dispute has already been rated", code="dispute.already_rated")
    now = utcnow()
    dispute.csat_score = data.score
    dispute.csat_comment = data.comment
    dispute.updated_at = now
    session.add(
        DisputeEvent(
            dispute_id=dispute.id,
            actor_id=actor.id,
            actor_role=actor.role.value,
            actor_name=actor.name or actor.id,
            action="csat",
            from_status=dispute.status,
            to_status=dispute.status,
            data={"score": data.score, "comment": data.comment},
            at=now,
        )
    )
    lines = await _lines_of(session, [dispute.id])
    return to_read(dispute, lines[dispute.id], actor, settings, now)


# --- timers ---------------------------------------------------------------------------------------------


def _timers(settings: Settings, now: datetime) -> list[tuple[Action, Status, Any, datetime]]:
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
    timing = timing_of(settings)
    for action, status, column, limit_at in _timers(settings, now):
        rows = await session.scalars(
            select(Dispute)
            .where(Dispute.status == status.value, column.is_not(None), column <= limit_at)
            .order_by(column)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        for dispute in rows.all():
            change = workflow.apply(state_of(dispute), action, workflow.SYSTEM, now=now, timing=timing)
            deadline = getattr(dispute, column.key)
            await _apply_change(
                session,
                dispute,
                change,
                who=SYSTEM_WHO,
                action=action.value,
                data={"deadline": deadline.isoformat() if deadline else None},
                now=now,
                settings=settings,
            )
            fired += 1
    return fired
