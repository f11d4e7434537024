"""The dispute workflow as data: which action moves which status where, and who may take it.

No I/O here. The service loads a dispute, asks :func:`apply` what an action does for an ``Actor``
(app/auth.py; timers and refund settlement act as ``SYSTEM_ACTOR``), and ``transitions.py`` writes the
result with its audit event in one transaction. ``allowed_actions`` and ``next_action_by`` in every
response come from the same tables, so what a client is offered is exactly what would be accepted.

The actions table of docs/api.md is ``TRANSITIONS`` plus ``WHO``. A few targets depend on the
resolution or the shop (``accept_offer`` → awaiting_return when a return is required, else resolving
for money and resolved for the rest); those choices are small functions below the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.auth import OPERATOR_STAFF, Actor, Role
from app.disputes.schemas import Resolution, ResolutionType


class Status(StrEnum):
    OPEN = "open"
    AWAITING_BUYER = "awaiting_buyer"
    ESCALATED = "escalated"
    IN_REVIEW = "in_review"
    AWAITING_RETURN = "awaiting_return"
    RETURN_IN_TRANSIT = "return_in_transit"
    RESOLVING = "resolving"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Outcome(StrEnum):
    """How a closed dispute ended."""

    RESOLVED = "resolved"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"
    ABANDONED = "abandoned"  # the buyer did not answer an offer
    RETURN_NOT_SHIPPED = "return_not_shipped"


class Action(StrEnum):
    PROPOSE = "propose"
    ACCEPT_OFFER = "accept_offer"
    REJECT_OFFER = "reject_offer"
    ACCEPT_CLAIM = "accept_claim"
    ESCALATE = "escalate"
    CLAIM = "claim"
    RELEASE = "release"
    REQUEST_INFO = "request_info"
    DECIDE = "decide"
    MARK_RETURNED = "mark_returned"
    CONFIRM_RETURN = "confirm_return"
    REOPEN = "reopen"
    APPEAL = "appeal"
    WITHDRAW = "withdraw"
    # Taken by timers (actor role "system"), never offered to callers.
    SELLER_TIMEOUT = "seller_timeout"
    BUYER_TIMEOUT = "buyer_timeout"
    RETURN_TIMEOUT = "return_timeout"
    CLOSE_RESOLVED = "close_resolved"
    # Taken when the refund of a money resolution settles (the payouts worker).
    REFUND_SUCCEEDED = "refund_succeeded"
    REFUND_FAILED = "refund_failed"


class Party(StrEnum):
    """Who an action is for. ``assignee`` is the operator agent holding the claim."""

    BUYER = "buyer"  # the buyer of this dispute
    SELLER = "seller"  # a member of this dispute's shop
    STAFF = "staff"  # any operator staff (agent, arbitrator, admin)
    CLAIMER = "claimer"  # an agent, arbitrator or admin who may claim
    ASSIGNEE = "assignee"  # the staff member holding the claim
    ARBITRATOR_ASSIGNEE = "arbitrator_assignee"  # the assignee, when an arbitrator
    SYSTEM = "system"


BEFORE_RESOLVING = (
    Status.OPEN,
    Status.AWAITING_BUYER,
    Status.ESCALATED,
    Status.IN_REVIEW,
    Status.AWAITING_RETURN,
    Status.RETURN_IN_TRANSIT,
)

# action -> statuses it may be taken from. Where it goes is `_target` below.
TRANSITIONS: dict[Action, tuple[Status, ...]] = {
    Action.PROPOSE: (Status.OPEN,),
    Action.ACCEPT_OFFER: (Status.AWAITING_BUYER,),
    Action.REJECT_OFFER: (Status.AWAITING_BUYER,),
    Action.ACCEPT_CLAIM: (Status.OPEN,),
    Action.ESCALATE: (Status.OPEN, Status.AWAITING_BUYER),
    Action.CLAIM: (Status.ESCALATED,),
    Action.RELEASE: (Status.IN_REVIEW,),
    Action.REQUEST_INFO: (Status.IN_REVIEW,),
    Action.DECIDE: (Status.IN_REVIEW,),
    Action.MARK_RETURNED: (Status.AWAITING_RETURN,),
    Action.CONFIRM_RETURN: (Status.RETURN_IN_TRANSIT,),
    Action.REOPEN: (Status.RESOLVED,),
    Action.APPEAL: (Status.RESOLVED,),
    Action.WITHDRAW: BEFORE_RESOLVING,
    Action.SELLER_TIMEOUT: (Status.OPEN,),
    Action.BUYER_TIMEOUT: (Status.AWAITING_BUYER,),
    Action.RETURN_TIMEOUT: (Status.AWAITING_RETURN,),
    Action.CLOSE_RESOLVED: (Status.RESOLVED,),
    Action.REFUND_SUCCEEDED: (Status.RESOLVING,),
    Action.REFUND_FAILED: (Status.RESOLVING,),
}

# action -> who may take it (any of these).
WHO: dict[Action, tuple[Party, ...]] = {
    Action.PROPOSE: (Party.SELLER, Party.STAFF),
    Action.ACCEPT_OFFER: (Party.BUYER,),
    Action.REJECT_OFFER: (Party.BUYER,),
    Action.ACCEPT_CLAIM: (Party.SELLER,),
    Action.ESCALATE: (Party.BUYER, Party.SELLER),
    Action.CLAIM: (Party.CLAIMER,),
    Action.RELEASE: (Party.ASSIGNEE,),
    Action.REQUEST_INFO: (Party.ASSIGNEE,),
    Action.DECIDE: (Party.ARBITRATOR_ASSIGNEE,),
    Action.MARK_RETURNED: (Party.BUYER,),
    Action.CONFIRM_RETURN: (Party.SELLER,),
    Action.REOPEN: (Party.BUYER,),
    Action.APPEAL: (Party.SELLER,),
    Action.WITHDRAW: (Party.BUYER,),
    Action.SELLER_TIMEOUT: (Party.SYSTEM,),
    Action.BUYER_TIMEOUT: (Party.SYSTEM,),
    Action.RETURN_TIMEOUT: (Party.SYSTEM,),
    Action.CLOSE_RESOLVED: (Party.SYSTEM,),
    Action.REFUND_SUCCEEDED: (Party.SYSTEM,),
    Action.REFUND_FAILED: (Party.SYSTEM,),
}

CALLER_ACTIONS = [a for a in Action if Party.SYSTEM not in WHO[a]]

# Who the dispute waits for in each status (``next_action_by``).
NEXT_ACTION_BY: dict[Status, str | None] = {
    Status.OPEN: "seller",
    Status.AWAITING_BUYER: "buyer",
    Status.ESCALATED: "operator",
    Status.IN_REVIEW: "operator",
    Status.AWAITING_RETURN: "buyer",
    Status.RETURN_IN_TRANSIT: "seller",
    Status.RESOLVING: "operator",
    Status.RESOLVED: None,
    Status.CLOSED: None,
}

MONEY_TYPES = frozenset(
    {ResolutionType.REFUND_FULL, ResolutionType.REFUND_PARTIAL, ResolutionType.CREDIT, ResolutionType.PROMO_CODE}
)
STAFF_ROLES = OPERATOR_STAFF
CLAIMER_ROLES = OPERATOR_STAFF


class Timing(StrEnum):
    """Named durations the workflow needs; the service fills them from settings."""

    SELLER_RESPONSE = "seller_response"
    BUYER_RESPONSE = "buyer_response"
    RETURN = "return"
    REOPEN_WINDOW = "reopen_window"


@dataclass(frozen=True, slots=True)
class DisputeState:
    """What the workflow needs to know of a dispute."""

    status: Status
    buyer_id: str
    seller_id: str
    assignee_id: str | None = None
    offer: Resolution | None = None
    resolution: Resolution | None = None
    refund_on: str = "receipt"  # the shop's setting: refund when a return ships, or when it arrives
    resolved_at: datetime | None = None
    decided_by: str | None = None  # the arbitrator of the last decision
    appealed: bool = False
    reopened: bool = False
    excluded_arbitrator: str | None = None  # after an appeal, the arbitrator who may not decide again


@dataclass(slots=True)
class Change:
    """What an action does: the new status and the fields to set (``None`` values clear a field). An
    ``offer`` or ``resolution`` field holds a :class:`Resolution`; the writer stores it as JSON."""

    to_status: Status
    fields: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None  # set when the dispute closes


class InvalidTransition(Exception):
    def __init__(self, action: str, status: Status, allowed: list[str]) -> None:
        super().__init__(f"{action} is not possible while the dispute is {status.value}")
        self.action = action
        self.status = status
        self.allowed = allowed


class NotYourAction(Exception):
    """The actor sees the dispute but this action is never theirs (403)."""


class AlreadyClaimed(Exception):
    def __init__(self, assignee_id: str | None) -> None:
        super().__init__("another agent has already claimed this dispute")
        self.assignee_id = assignee_id


class RuleViolation(Exception):
    """A valid request that the workflow's rules refuse (422), with a stable code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# --- who is who -----------------------------------------------------------------------------------------


def parties_of(state: DisputeState, actor: Actor) -> set[Party]:
    parties: set[Party] = set()
    if actor.role == Role.SYSTEM:
        return {Party.SYSTEM}
    if actor.role == Role.BUYER and actor.id == state.buyer_id:
        parties.add(Party.BUYER)
    if actor.role == Role.SELLER and actor.seller_id and actor.seller_id == state.seller_id:
        parties.add(Party.SELLER)
    if actor.role in STAFF_ROLES:
        parties.add(Party.STAFF)
    if actor.role in CLAIMER_ROLES:
        parties.add(Party.CLAIMER)
    if actor.role in STAFF_ROLES and state.assignee_id == actor.id:
        parties.add(Party.ASSIGNEE)
        if actor.role == Role.ARBITRATOR:
            parties.add(Party.ARBITRATOR_ASSIGNEE)
    return parties


def _role_could(action: Action, actor: Actor, state: DisputeState) -> bool:
    """Whether the actor's role is ever the one for this action on this dispute (ignoring status)."""
    parties = parties_of(state, actor)
    needed = WHO[action]
    if any(p in parties for p in needed):
        return True
    # Assignee-only actions: any staff member could hold the claim, so the role qualifies.
    if Party.ASSIGNEE in needed and actor.role in STAFF_ROLES:
        return True
    return Party.ARBITRATOR_ASSIGNEE in needed and actor.role == Role.ARBITRATOR


def _conditions(action: Action, state: DisputeState, actor: Actor, now: datetime, timing: dict[Timing, int]) -> str:
    """Why an action the actor's party may take is refused in this state ('' when it is not)."""
    window = timedelta(seconds=timing[Timing.REOPEN_WINDOW])
    if action in (Action.REOPEN, Action.APPEAL) and (state.resolved_at is None or now > state.resolved_at + window):
        return "the reopen window has passed"
    if action == Action.APPEAL:
        if state.appealed:
            return "a decision can be appealed once"
        if state.decided_by is None:
            return "only an arbitrator's decision can be appealed"
    if action == Action.REOPEN and state.reopened:
        return "a dispute can be reopened once"
    if action == Action.DECIDE and state.excluded_arbitrator == actor.id:
        return "an appeal is decided by another arbitrator"
    return ""


def allowed_actions(state: DisputeState, actor: Actor, now: datetime, timing: dict[Timing, int]) -> list[str]:
    """What this actor may do now: the status allows it, the actor is the right party, rules hold."""
    parties = parties_of(state, actor)
    allowed = []
    for action in CALLER_ACTIONS:
        if state.status not in TRANSITIONS[action]:
            continue
        if not any(p in parties for p in WHO[action]):
            continue
        if _conditions(action, state, actor, now, timing):
            continue
        allowed.append(action.value)
    return allowed


def next_action_by(status: Status) -> str | None:
    return NEXT_ACTION_BY[status]


# --- applying an action ---------------------------------------------------------------------------------


def check(state: DisputeState, action: Action, actor: Actor, *, now: datetime, timing: dict[Timing, int]) -> None:
    """Raise why ``actor`` may not take ``action`` now: NotYourAction (403), AlreadyClaimed or
    InvalidTransition (409), RuleViolation (422). Returns when the action is allowed."""
    if not _role_could(action, actor, state):
        raise NotYourAction(f"a {actor.role} may not {action.value} this dispute")
    if state.status not in TRANSITIONS[action]:
        if action == Action.CLAIM and state.status == Status.IN_REVIEW:
            raise AlreadyClaimed(state.assignee_id)
        raise InvalidTransition(action.value, state.status, allowed_actions(state, actor, now, timing))
    parties = parties_of(state, actor)
    if not any(p in parties for p in WHO[action]):
        # Right role, wrong person: another agent holds the claim, or a non-arbitrator assignee decides.
        raise NotYourAction(f"only the {WHO[action][0].value.replace('_', ' ')} may {action.value} this dispute")
    reason = _conditions(action, state, actor, now, timing)
    if reason:
        raise RuleViolation(reason, code=f"dispute.{action.value}_not_allowed")


def apply(
    state: DisputeState,
    action: Action,
    actor: Actor,
    *,
    now: datetime,
    timing: dict[Timing, int],
    payload: dict[str, Any] | None = None,
) -> Change:
    """The change ``action`` makes (after :func:`check`). ``payload`` holds the action's validated fields."""
    check(state, action, actor, now=now, timing=timing)
    return _target(state, action, actor, now, timing, payload or {})


def _resolution_change(state: DisputeState, resolution: Resolution, now: datetime, timing: dict[Timing, int]) -> Change:
    """Where a settled resolution goes: a return first, else the refund (money) or done."""
    if resolution.return_required:
        return Change(
            Status.AWAITING_RETURN,
            {"resolution": resolution, "return_by": now + timedelta(seconds=timing[Timing.RETURN])},
        )
    return _settle(resolution, now, timing)


def _settle(resolution: Resolution, now: datetime, timing: dict[Timing, int]) -> Change:
    if resolution.type in MONEY_TYPES:
        # The refunds capability pays it and moves the dispute on; until then it waits here.
        return Change(Status.RESOLVING, {"resolution": resolution})
    return Change(Status.RESOLVED, {"resolution": resolution, "resolved_at": now})


def _held(terms: Resolution | None, state: DisputeState, what: str) -> Resolution:
    """The offer or resolution the status implies (an ``awaiting_buyer`` dispute holds an offer, a
    return follows a resolution): the tables above never reach these statuses without one."""
    if terms is None:
        raise ValueError(f"a dispute {state.status.value} has no {what}")
    return terms


def _target(
    state: DisputeState,
    action: Action,
    actor: Actor,
    now: datetime,
    timing: dict[Timing, int],
    payload: dict[str, Any],
) -> Change:
    buyer_deadline = now + timedelta(seconds=timing[Timing.BUYER_RESPONSE])
    seller_deadline = now + timedelta(seconds=timing[Timing.SELLER_RESPONSE])
    match action:
        case Action.PROPOSE:
            return Change(Status.AWAITING_BUYER, {"offer": payload["resolution"], "respond_by": buyer_deadline})
        case Action.ACCEPT_OFFER:
            change = _resolution_change(state, _held(state.offer, state, "offer"), now, timing)
            change.fields.update(offer=None, respond_by=None)
            return change
        case Action.REJECT_OFFER:
            return Change(Status.OPEN, {"offer": None, "respond_by": seller_deadline})
        case Action.ACCEPT_CLAIM:
            change = _resolution_change(state, payload["resolution"], now, timing)
            change.fields["respond_by"] = None
            return change
        case Action.ESCALATE | Action.SELLER_TIMEOUT:
            return Change(Status.ESCALATED, {"respond_by": None, "offer": None, "escalated_at": now})
        case Action.CLAIM:
            return Change(Status.IN_REVIEW, {"assignee_id": actor.id, "assignee_role": actor.role.value})
        case Action.RELEASE:
            return Change(Status.ESCALATED, {"assignee_id": None, "assignee_role": None})
        case Action.REQUEST_INFO:
            return Change(Status.IN_REVIEW)
        case Action.DECIDE:
            change = _resolution_change(state, payload["resolution"], now, timing)
            change.fields.update(decided_by=actor.id, excluded_arbitrator=None)
            return change
        case Action.MARK_RETURNED:
            resolution = _held(state.resolution, state, "resolution")
            fields: dict[str, Any] = {"return_by": None, "return_shipment": payload}
            if state.refund_on == "shipment" and resolution.type in MONEY_TYPES:
                return Change(Status.RESOLVING, fields)
            return Change(Status.RETURN_IN_TRANSIT, fields)
        case Action.CONFIRM_RETURN:
            resolution = _held(state.resolution, state, "resolution")
            if payload["condition"] != "ok":
                return Change(Status.ESCALATED, {"escalated_at": now, "return_condition": payload["condition"]})
            change = _settle(resolution, now, timing)
            change.fields["return_condition"] = "ok"
            return change
        case Action.REOPEN:
            return Change(
                Status.ESCALATED,
                {
                    "reopened": True,
                    "resolved_at": None,
                    "escalated_at": now,
                    "assignee_id": None,
                    "assignee_role": None,
                },
            )
        case Action.APPEAL:
            return Change(
                Status.ESCALATED,
                {
                    "appealed": True,
                    "resolved_at": None,
                    "escalated_at": now,
                    "assignee_id": None,
                    "assignee_role": None,
                    "excluded_arbitrator": state.decided_by,
                },
            )
        case Action.WITHDRAW:
            return Change(Status.CLOSED, {"respond_by": None, "return_by": None}, outcome=Outcome.WITHDRAWN)
        case Action.BUYER_TIMEOUT:
            return Change(Status.CLOSED, {"respond_by": None}, outcome=Outcome.ABANDONED)
        case Action.RETURN_TIMEOUT:
            return Change(Status.CLOSED, {"return_by": None}, outcome=Outcome.RETURN_NOT_SHIPPED)
        case Action.REFUND_SUCCEEDED:
            return Change(Status.RESOLVED, {"resolved_at": now, "refund_failed": False})
        case Action.REFUND_FAILED:
            # Back to the operator, flagged: the money did not go out.
            return Change(Status.ESCALATED, {"escalated_at": now, "refund_failed": True, "assignee_id": None})
        case Action.CLOSE_RESOLVED:
            denied = state.resolution is not None and state.resolution.type == ResolutionType.DENY
            return Change(Status.CLOSED, {}, outcome=Outcome.DENIED if denied else Outcome.RESOLVED)
    raise AssertionError(f"no target for {action}")  # pragma: no cover - every Action has a case
