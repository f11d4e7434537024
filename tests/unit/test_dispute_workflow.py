"""The workflow tables, exhaustively: every (status, action, caller) combination either moves to the
contract's status or raises, and ``allowed_actions`` offers exactly what ``apply`` accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.auth import SYSTEM_ACTOR, Actor, Role
from app.disputes import workflow
from app.disputes.schemas import Resolution, ResolutionType
from app.disputes.workflow import Action, DisputeState, Status, Timing
from app.money import Money

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIMING = {
    Timing.SELLER_RESPONSE: 48 * 3600,
    Timing.BUYER_RESPONSE: 72 * 3600,
    Timing.RETURN: 14 * 86400,
    Timing.REOPEN_WINDOW: 14 * 86400,
}
REFUND = Resolution(type=ResolutionType.REFUND_FULL, amount=Money(5000, "EUR"), return_required=False)
REFUND_WITH_RETURN = msgspec.structs.replace(REFUND, return_required=True)
REPLACEMENT = Resolution(type=ResolutionType.REPLACEMENT, return_required=False)

BUYER = Actor(id="buyer-1", role=Role.BUYER)
OTHER_BUYER = Actor(id="buyer-2", role=Role.BUYER)
SELLER = Actor(id="member-1", role=Role.SELLER, seller_id="shop-1")
OTHER_SELLER = Actor(id="member-9", role=Role.SELLER, seller_id="shop-9")
AGENT = Actor(id="agent-1", role=Role.AGENT)
ARBITRATOR = Actor(id="arb-1", role=Role.ARBITRATOR)
OTHER_ARBITRATOR = Actor(id="arb-2", role=Role.ARBITRATOR)
ADMIN = Actor(id="admin-1", role=Role.ADMIN)
FINANCE = Actor(id="fin-1", role=Role.FINANCE)
MARKETPLACE = Actor(id="mp", role=Role.MARKETPLACE)
CALLERS = [BUYER, OTHER_BUYER, SELLER, OTHER_SELLER, AGENT, ARBITRATOR, OTHER_ARBITRATOR, ADMIN, FINANCE, MARKETPLACE]

PAYLOADS: dict[Action, dict[str, Any]] = {
    Action.PROPOSE: {"resolution": REFUND},
    Action.ACCEPT_CLAIM: {"resolution": REFUND},
    Action.DECIDE: {"resolution": msgspec.structs.replace(REFUND, at_fault="seller"), "rationale": "photos"},
    Action.ESCALATE: {"note": "no answer"},
    Action.REQUEST_INFO: {"party": "seller", "question": "tracking?"},
    Action.MARK_RETURNED: {"carrier": "La Poste", "tracking_number": "X1"},
    Action.CONFIRM_RETURN: {"condition": "ok"},
    Action.REOPEN: {"note": "broken again"},
    Action.APPEAL: {"note": "unfair"},
}

# The actions table of docs/api.md: action -> (statuses it is taken from, who may take it).
CONTRACT: dict[Action, tuple[set[Status], set[Actor]]] = {
    Action.PROPOSE: ({Status.OPEN}, {SELLER, AGENT, ARBITRATOR, OTHER_ARBITRATOR, ADMIN}),
    Action.ACCEPT_OFFER: ({Status.AWAITING_BUYER}, {BUYER}),
    Action.REJECT_OFFER: ({Status.AWAITING_BUYER}, {BUYER}),
    Action.ACCEPT_CLAIM: ({Status.OPEN}, {SELLER}),
    Action.ESCALATE: ({Status.OPEN, Status.AWAITING_BUYER}, {BUYER, SELLER}),
    Action.CLAIM: ({Status.ESCALATED}, {AGENT, ARBITRATOR, OTHER_ARBITRATOR, ADMIN}),
    Action.RELEASE: ({Status.IN_REVIEW}, {ARBITRATOR}),  # the assignee in the states below
    Action.REQUEST_INFO: ({Status.IN_REVIEW}, {ARBITRATOR}),
    Action.DECIDE: ({Status.IN_REVIEW}, {ARBITRATOR}),
    Action.MARK_RETURNED: ({Status.AWAITING_RETURN}, {BUYER}),
    Action.CONFIRM_RETURN: ({Status.RETURN_IN_TRANSIT}, {SELLER}),
    Action.REOPEN: ({Status.RESOLVED}, {BUYER}),
    Action.APPEAL: ({Status.RESOLVED}, {SELLER}),
    Action.WITHDRAW: (set(workflow.BEFORE_RESOLVING), {BUYER}),
}


def state(status: Status, **over: Any) -> DisputeState:
    """A dispute in ``status`` with what that status implies (an offer, a claim, a decision...)."""
    fields: dict[str, Any] = {"status": status, "buyer_id": "buyer-1", "seller_id": "shop-1"}
    if status == Status.AWAITING_BUYER:
        fields["offer"] = REFUND
    if status == Status.IN_REVIEW:
        fields.update(assignee_id="arb-1")
    if status in (Status.AWAITING_RETURN, Status.RETURN_IN_TRANSIT, Status.RESOLVING):
        fields["resolution"] = REFUND_WITH_RETURN
    if status == Status.RESOLVED:
        fields.update(resolution=REFUND, resolved_at=NOW - timedelta(days=1), decided_by="arb-2")
    fields.update(over)
    return DisputeState(**fields)


@pytest.mark.parametrize("action", workflow.CALLER_ACTIONS, ids=str)
@pytest.mark.parametrize("status", list(Status), ids=str)
@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: f"{c.role}:{c.id}")
def test_every_combination_follows_the_contract(action: Action, status: Status, caller: Actor) -> None:
    statuses, who = CONTRACT[action]
    dispute = state(status)
    allowed = action.value in workflow.allowed_actions(dispute, caller, NOW, TIMING)
    if status in statuses and caller in who:
        change = workflow.apply(dispute, action, caller, now=NOW, timing=TIMING, payload=PAYLOADS.get(action))
        assert change.to_status in EXPECTED_TARGETS[action]
        assert allowed
    else:
        with pytest.raises(
            (workflow.NotYourAction, workflow.InvalidTransition, workflow.AlreadyClaimed, workflow.RuleViolation)
        ):
            workflow.apply(dispute, action, caller, now=NOW, timing=TIMING, payload=PAYLOADS.get(action))
        assert not allowed


EXPECTED_TARGETS: dict[Action, set[Status]] = {
    Action.PROPOSE: {Status.AWAITING_BUYER},
    Action.ACCEPT_OFFER: {Status.AWAITING_RETURN, Status.RESOLVING, Status.RESOLVED},
    Action.REJECT_OFFER: {Status.OPEN},
    Action.ACCEPT_CLAIM: {Status.AWAITING_RETURN, Status.RESOLVING, Status.RESOLVED},
    Action.ESCALATE: {Status.ESCALATED},
    Action.CLAIM: {Status.IN_REVIEW},
    Action.RELEASE: {Status.ESCALATED},
    Action.REQUEST_INFO: {Status.IN_REVIEW},
    Action.DECIDE: {Status.AWAITING_RETURN, Status.RESOLVING, Status.RESOLVED},
    Action.MARK_RETURNED: {Status.RETURN_IN_TRANSIT, Status.RESOLVING},
    Action.CONFIRM_RETURN: {Status.RESOLVING, Status.RESOLVED, Status.ESCALATED},
    Action.REOPEN: {Status.ESCALATED},
    Action.APPEAL: {Status.ESCALATED},
    Action.WITHDRAW: {Status.CLOSED},
}


def test_a_disallowed_status_lists_what_is_allowed() -> None:
    with pytest.raises(workflow.NotYourAction):  # never the seller's action: 403, not 409
        workflow.apply(state(Status.AWAITING_BUYER), Action.WITHDRAW, SELLER, now=NOW, timing=TIMING)

    with pytest.raises(workflow.InvalidTransition) as caught:
        workflow.apply(state(Status.OPEN), Action.ACCEPT_OFFER, BUYER, now=NOW, timing=TIMING)
    assert caught.value.allowed == ["escalate", "withdraw"]


def test_a_second_claim_is_already_claimed_not_invalid() -> None:
    with pytest.raises(workflow.AlreadyClaimed) as caught:
        workflow.apply(state(Status.IN_REVIEW), Action.CLAIM, AGENT, now=NOW, timing=TIMING)
    assert caught.value.assignee_id == "arb-1"


def test_only_the_assignee_acts_on_a_claimed_dispute_and_only_an_arbitrator_decides() -> None:
    claimed_by_agent = state(Status.IN_REVIEW, assignee_id="agent-1")
    with pytest.raises(workflow.NotYourAction):
        workflow.apply(claimed_by_agent, Action.RELEASE, ARBITRATOR, now=NOW, timing=TIMING)
    assert workflow.apply(claimed_by_agent, Action.RELEASE, AGENT, now=NOW, timing=TIMING).to_status == Status.ESCALATED
    with pytest.raises(workflow.NotYourAction):
        workflow.apply(claimed_by_agent, Action.DECIDE, AGENT, now=NOW, timing=TIMING, payload=PAYLOADS[Action.DECIDE])
    assert "decide" not in workflow.allowed_actions(claimed_by_agent, AGENT, NOW, TIMING)


def test_targets_depend_on_the_resolution_and_the_shop() -> None:
    offer = state(Status.AWAITING_BUYER, offer=REFUND_WITH_RETURN)
    change = workflow.apply(offer, Action.ACCEPT_OFFER, BUYER, now=NOW, timing=TIMING)
    assert change.to_status == Status.AWAITING_RETURN
    assert change.fields["return_by"] == NOW + timedelta(days=14)

    money = workflow.apply(state(Status.AWAITING_BUYER), Action.ACCEPT_OFFER, BUYER, now=NOW, timing=TIMING)
    assert money.to_status == Status.RESOLVING  # the refund pays it, then it resolves

    swap = state(Status.AWAITING_BUYER, offer=REPLACEMENT)
    assert workflow.apply(swap, Action.ACCEPT_OFFER, BUYER, now=NOW, timing=TIMING).to_status == Status.RESOLVED

    shipped = PAYLOADS[Action.MARK_RETURNED]
    on_receipt = state(Status.AWAITING_RETURN)
    on_shipment = state(Status.AWAITING_RETURN, refund_on="shipment")
    assert (
        workflow.apply(on_receipt, Action.MARK_RETURNED, BUYER, now=NOW, timing=TIMING, payload=shipped).to_status
        == Status.RETURN_IN_TRANSIT
    )
    assert (
        workflow.apply(on_shipment, Action.MARK_RETURNED, BUYER, now=NOW, timing=TIMING, payload=shipped).to_status
        == Status.RESOLVING
    )

    damaged = {"condition": "damaged"}
    in_transit = state(Status.RETURN_IN_TRANSIT)
    assert (
        workflow.apply(in_transit, Action.CONFIRM_RETURN, SELLER, now=NOW, timing=TIMING, payload=damaged).to_status
        == Status.ESCALATED
    )


def test_reopen_and_appeal_windows_and_once_rules() -> None:
    late = state(Status.RESOLVED, resolved_at=NOW - timedelta(days=15))
    for action, caller in ((Action.REOPEN, BUYER), (Action.APPEAL, SELLER)):
        with pytest.raises(workflow.RuleViolation):
            workflow.apply(late, action, caller, now=NOW, timing=TIMING, payload=PAYLOADS[action])
        assert action.value not in workflow.allowed_actions(late, caller, NOW, TIMING)

    appealed = state(Status.RESOLVED, appealed=True)
    with pytest.raises(workflow.RuleViolation):
        workflow.apply(appealed, Action.APPEAL, SELLER, now=NOW, timing=TIMING, payload=PAYLOADS[Action.APPEAL])

    agreed = state(Status.RESOLVED, decided_by=None)  # settled between the parties: nothing to appeal
    with pytest.raises(workflow.RuleViolation):
        workflow.apply(agreed, Action.APPEAL, SELLER, now=NOW, timing=TIMING, payload=PAYLOADS[Action.APPEAL])

    change = workflow.apply(state(Status.RESOLVED), Action.APPEAL, SELLER, now=NOW, timing=TIMING)
    assert change.fields["excluded_arbitrator"] == "arb-2"


def test_the_appealed_arbitrator_may_not_decide_again() -> None:
    again = state(Status.IN_REVIEW, assignee_id="arb-2", excluded_arbitrator="arb-2")
    with pytest.raises(workflow.RuleViolation):
        workflow.apply(again, Action.DECIDE, OTHER_ARBITRATOR, now=NOW, timing=TIMING, payload=PAYLOADS[Action.DECIDE])
    assert "decide" not in workflow.allowed_actions(again, OTHER_ARBITRATOR, NOW, TIMING)
    assert "release" in workflow.allowed_actions(again, OTHER_ARBITRATOR, NOW, TIMING)


@pytest.mark.parametrize(
    ("action", "status", "to", "outcome"),
    [
        (Action.SELLER_TIMEOUT, Status.OPEN, Status.ESCALATED, None),
        (Action.BUYER_TIMEOUT, Status.AWAITING_BUYER, Status.CLOSED, "abandoned"),
        (Action.RETURN_TIMEOUT, Status.AWAITING_RETURN, Status.CLOSED, "return_not_shipped"),
        (Action.CLOSE_RESOLVED, Status.RESOLVED, Status.CLOSED, "resolved"),
        (Action.REFUND_SUCCEEDED, Status.RESOLVING, Status.RESOLVED, None),
        (Action.REFUND_FAILED, Status.RESOLVING, Status.ESCALATED, None),
    ],
)
def test_timers_are_system_actions(action: Action, status: Status, to: Status, outcome: str | None) -> None:
    change = workflow.apply(state(status), action, SYSTEM_ACTOR, now=NOW, timing=TIMING)
    assert (change.to_status, change.outcome) == (to, outcome)
    for caller in CALLERS:
        with pytest.raises(workflow.NotYourAction):
            workflow.apply(state(status), action, caller, now=NOW, timing=TIMING)
        assert action.value not in workflow.allowed_actions(state(status), caller, NOW, TIMING)


def test_a_denied_dispute_closes_as_denied() -> None:
    denied = state(Status.RESOLVED, resolution=Resolution(type=ResolutionType.DENY, at_fault="buyer"))
    assert workflow.apply(denied, Action.CLOSE_RESOLVED, SYSTEM_ACTOR, now=NOW, timing=TIMING).outcome == "denied"


def test_next_action_by_covers_every_status() -> None:
    assert {s: workflow.next_action_by(s) for s in Status} == {
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
