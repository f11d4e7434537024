"""The disclosure rules (app/permissions/disclosure.py) on their own: no database."""

from __future__ import annotations

from app.auth import SYSTEM_ACTOR, TOKEN_ROLES, Actor, Role
from app.disputes.workflow import Action
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed

BUYER = Actor(id="b1", role=Role.BUYER)
SELLER = Actor(id="m1", role=Role.SELLER, seller_id="s1")
AGENT = Actor(id="agent-1", role=Role.AGENT)
FINANCE = Actor(id="f1", role=Role.FINANCE)


def view(actor: Actor) -> disclosure.View:
    return disclosure.view_of(actor, buyer_id="b1", seller_id="s1")


def test_every_audit_action_has_its_fields_placed() -> None:
    assert {a.value for a in Action} | {"open", "csat"} == set(disclosure.AUDIT_FIELDS)


def test_a_question_copied_into_an_old_audit_event_is_read_only_where_its_thread_is() -> None:
    legacy = {"party": "seller", "question": "What did the courier say?"}
    assert disclosure.audit_data(view(BUYER), "request_info", "arbitrator", legacy) == {"party": "seller"}
    assert disclosure.audit_data(view(FINANCE), "request_info", "arbitrator", legacy) == {"party": "seller"}
    assert disclosure.audit_data(view(SELLER), "request_info", "arbitrator", legacy) == legacy
    assert disclosure.audit_data(view(AGENT), "request_info", "arbitrator", legacy) == legacy


def test_a_field_nobody_placed_is_for_operator_staff_only() -> None:
    data = {"reason": "defective", "secret_new_field": "x"}
    assert disclosure.audit_data(view(BUYER), "open", "buyer", data) == {"reason": "defective"}
    assert disclosure.audit_data(view(AGENT), "open", "buyer", data) == data
    assert disclosure.audit_data(view(BUYER), "some_future_action", "agent", {"note": "n"}) == {}


def test_a_note_to_the_operator_is_read_by_its_author_and_staff() -> None:
    note = {"note": "to the operator"}
    assert disclosure.audit_data(view(SELLER), "escalate", "buyer", note) == {}
    assert disclosure.audit_data(view(BUYER), "escalate", "buyer", note) == note
    assert disclosure.audit_data(view(BUYER), "escalate", "seller", note) == {}
    assert disclosure.audit_data(view(SELLER), "escalate", "seller", note) == note


def test_another_shop_or_buyer_gets_no_party_view() -> None:
    other_shop = disclosure.view_of(SELLER, buyer_id="b1", seller_id="s2")
    assert (other_shop.funding, other_shop.audiences) == (False, frozenset())
    assert view(SELLER).funding
    assert not view(BUYER).funding
    assert view(AGENT).everything
    assert view(FINANCE).audiences == frozenset()


def test_a_dispute_summary_is_shared_unchanged_with_those_who_see_everything_of_it() -> None:
    summary = {
        "buyer_id": "b1",
        "seller_id": "s1",
        "assignee_id": "agent-1",
        "actor": {"id": "agent-1", "role": "agent"},
    }
    assert disclosure.dispute_summary(AGENT, summary) is summary
    assert disclosure.dispute_summary(FINANCE, summary) is summary
    shown = disclosure.dispute_summary(BUYER, summary)
    assert (shown["assignee_id"], shown["actor"]) == (None, {"id": None, "role": "agent"})
    assert summary["assignee_id"] == "agent-1"  # the shared payload is not changed


def test_the_system_author_writes_only_to_one_party_and_never_comes_from_a_token() -> None:
    assert Role.SYSTEM.value not in TOKEN_ROLES
    assert SYSTEM_ACTOR.role == Role.SYSTEM
    for audience, allowed in (
        ("operator_buyer", True),
        ("operator_seller", True),
        ("tripartite", False),
        ("buyer_seller", False),
        ("internal", False),
    ):
        resource = Resource(kind=f"thread:{audience}", buyer_id="b1", seller_id="s1")
        assert is_allowed(SYSTEM_ACTOR, resource, "write") is allowed, audience
    assert not is_allowed(SYSTEM_ACTOR, Resource(kind="dispute", buyer_id="b1", seller_id="s1"), "read")
