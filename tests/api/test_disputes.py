"""Disputes through the API: every path of the actions table (docs/api.md), visibility, roles, conflicts,
the queue, the audit timeline, escrow, CSAT and concurrency — on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Case, Tokens, World, money, uid

Headers = dict[str, str]


@pytest.fixture
def case(client: TestClient[Any], auth: Tokens, world: World) -> Case:
    return Case(client, auth, world)


REFUND_PARTIAL = {"type": "refund_partial", "amount": money(1500), "return_required": False}


def test_opening_creates_the_tripartite_thread_and_freezes_escrow(client: TestClient[Any], case: Case) -> None:
    dispute = case.open()
    assert dispute["status"] == "open"
    assert dispute["priority"] == "standard"
    assert dispute["next_action_by"] == "seller"
    assert dispute["amount"] == money(5000)
    assert dispute["lines"] == [{"line_id": "l1", "quantity": 2}]
    assert dispute["deadlines"]["respond_by"] > dispute["created_at"]
    assert dispute["allowed_actions"] == ["escalate", "withdraw"]
    assert case.get(case.seller)["allowed_actions"] == ["propose", "accept_claim", "escalate"]

    thread = client.get(f"/v1/threads/{dispute['thread_id']}", headers=case.seller).json()
    assert (thread["audience"], thread["dispute_id"]) == ("tripartite", dispute["dispute_id"])
    messages = client.get(f"/v1/threads/{dispute['thread_id']}/messages", headers=case.seller).json()["items"]
    assert messages[0]["body"] == "The kettle stopped heating after two days."

    order = client.get(f"/v1/orders/{case.order_id}", headers=case.buyer).json()
    assert order["escrow"]["status"] == "frozen"
    [opened] = case.events()
    assert (opened["action"], opened["from_status"], opened["to_status"]) == ("open", None, "open")
    assert opened["actor"] == {"id": case.buyer_id, "role": "buyer", "name": "Camille"}


def test_critical_reasons_and_one_open_dispute_per_line(client: TestClient[Any], case: Case) -> None:
    assert case.open(reason="not_received")["priority"] == "critical"
    again = client.post(
        "/v1/disputes",
        json={
            "order_id": case.order_id,
            "reason": "damaged",
            "requested": {"type": "replacement"},
            "description": "again",
        },
        headers=case.buyer,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "dispute.already_open"


def test_who_may_open_and_see(client: TestClient[Any], case: Case) -> None:
    body = {"order_id": case.order_id, "reason": "other", "requested": {"type": "repair"}, "description": "x"}
    assert client.post("/v1/disputes", json=body, headers=case.stranger).status_code == 404
    assert client.post("/v1/disputes", json=body, headers=case.seller).status_code == 403
    bad = client.post("/v1/disputes", json={**body, "reason": "bored"}, headers=case.buyer)
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"
    partial = {**body, "requested": {"type": "refund_partial"}}
    assert client.post("/v1/disputes", json=partial, headers=case.buyer).status_code == 400
    too_much = {**body, "requested": {"type": "refund_partial", "amount": money(9000)}}
    refused = client.post("/v1/disputes", json=too_much, headers=case.buyer).json()
    assert refused["code"] == "dispute.amount_exceeds_order"
    wrong_line = {**body, "lines": [{"line_id": "nope", "quantity": 1}]}
    assert client.post("/v1/disputes", json=wrong_line, headers=case.buyer).status_code == 400

    dispute = case.open()
    path = f"/v1/disputes/{dispute['dispute_id']}"
    for who in (case.stranger, case.other_shop):
        assert client.get(path, headers=who).status_code == 404
        assert client.post(f"{path}/actions", json={"action": "withdraw"}, headers=who).status_code == 404
        listed = client.get("/v1/disputes", headers=who).json()["items"]
        assert dispute["dispute_id"] not in [d["dispute_id"] for d in listed]
    assert client.get(path, headers=case.finance).status_code == 200
    assert client.get(path, headers=case.finance).json()["allowed_actions"] == []
    mine = client.get("/v1/disputes", headers=case.buyer).json()["items"]
    assert [d["dispute_id"] for d in mine] == [dispute["dispute_id"]]


def test_offer_accepted_waits_for_the_refund(client: TestClient[Any], auth: Tokens, world: World) -> None:
    case = Case(client, auth, world, refund_budget=money(2_000))  # a shop offers money within its budget
    case.open()
    case.act(case.seller, "propose", resolution=REFUND_PARTIAL)
    assert case.dispute["status"] == "awaiting_buyer"
    assert case.dispute["offer"]["amount"] == money(1500)
    assert case.get(case.buyer)["allowed_actions"] == ["accept_offer", "reject_offer", "escalate", "withdraw"]
    case.act(case.buyer, "accept_offer")
    assert (case.dispute["status"], case.dispute["resolution"]["type"]) == ("resolving", "refund_partial")
    assert [e["action"] for e in case.events()] == ["open", "propose", "accept_offer"]


def test_rejected_offer_escalation_claim_question_and_decision(client: TestClient[Any], case: Case) -> None:
    case.open()
    case.act(case.seller, "propose", resolution={"type": "repair"})
    case.act(case.buyer, "reject_offer")
    assert case.dispute["status"] == "open"
    case.act(case.buyer, "escalate", note="The seller only offers a repair.")
    assert case.dispute["status"] == "escalated"
    assert case.dispute["sla"]["breached"] is False
    assert case.dispute["next_action_by"] == "operator"

    case.act(case.seller, "claim", expect=403)
    case.act(case.arbitrator, "claim")
    assert case.dispute["status"] == "in_review"
    assert case.dispute["assignee_id"]
    case.act(case.agent, "request_info", expect=403, party="seller", question="?")

    case.act(case.arbitrator, "request_info", party="seller", question="Do you have the tracking number?")
    private = client.get("/v1/threads", params={"dispute_id": case.dispute["dispute_id"]}, headers=case.seller).json()[
        "items"
    ]
    assert {t["audience"] for t in private} == {"tripartite", "operator_seller"}
    buyer_sees = client.get("/v1/threads", params={"dispute_id": case.dispute["dispute_id"]}, headers=case.buyer)
    assert {t["audience"] for t in buyer_sees.json()["items"]} == {"tripartite"}

    no_fault = case.act(case.arbitrator, "decide", expect=400, resolution={"type": "deny"}, rationale="x")
    assert no_fault["errors"][0]["field"] == "resolution.at_fault"
    case.act(
        case.arbitrator,
        "decide",
        resolution={"type": "deny", "at_fault": "buyer"},
        rationale="The photos show misuse.",
    )
    assert case.dispute["status"] == "resolved"
    assert case.dispute["deadlines"]["reopen_until"]
    assert case.get(case.seller)["allowed_actions"] == ["appeal"]
    assert case.get(case.buyer)["allowed_actions"] == ["reopen"]


def test_appeal_goes_to_another_arbitrator(case: Case) -> None:
    case.open()
    case.act(case.seller, "escalate", note="Buyer refuses everything.")
    case.act(case.arbitrator, "claim")
    case.act(case.arbitrator, "decide", resolution={"type": "replacement", "at_fault": "seller"}, rationale="r")
    assert case.dispute["status"] == "resolved"
    case.act(case.seller, "appeal", note="The item was fine.")
    assert case.dispute["status"] == "escalated"
    case.act(case.arbitrator, "claim")
    refused = case.act(
        case.arbitrator, "decide", expect=422, resolution={"type": "deny", "at_fault": "buyer"}, rationale="r"
    )
    assert refused["code"] == "dispute.decide_not_allowed"
    case.act(case.arbitrator, "release")
    case.act(case.other_arbitrator, "claim")
    case.act(case.other_arbitrator, "decide", resolution={"type": "deny", "at_fault": "buyer"}, rationale="r")
    assert case.dispute["status"] == "resolved"
    assert case.get(case.seller)["allowed_actions"] == []  # appealed once


def test_return_path_and_a_damaged_return(client: TestClient[Any], auth: Tokens, world: World) -> None:
    case = Case(client, auth, world, refund_budget=money(10_000))
    case.open()
    case.act(case.seller, "accept_claim", return_required=True)
    assert case.dispute["status"] == "awaiting_return"
    assert case.dispute["deadlines"]["return_by"]
    assert case.dispute["next_action_by"] == "buyer"
    case.act(case.buyer, "mark_returned", carrier="La Poste", tracking_number="6A123")
    assert case.dispute["status"] == "return_in_transit"
    assert case.dispute["return_shipment"] == {"carrier": "La Poste", "tracking_number": "6A123"}
    case.act(case.seller, "confirm_return", condition="ok")
    assert case.dispute["status"] == "resolving"

    other = Case(client, auth, world, refund_budget=money(10_000))
    other.open()
    other.act(other.seller, "accept_claim", return_required=True)
    other.act(other.buyer, "mark_returned", carrier="UPS", tracking_number="1Z")
    other.act(other.seller, "confirm_return", condition="damaged")
    assert other.dispute["status"] == "escalated"


def test_refund_on_shipment_and_the_budget(client: TestClient[Any], auth: Tokens, world: World) -> None:
    case = Case(client, auth, world, refund_budget=money(10_000), refund_on="shipment")
    case.open()
    case.act(case.seller, "accept_claim", return_required=True)
    case.act(case.buyer, "mark_returned", carrier="La Poste", tracking_number="6A1")
    assert case.dispute["status"] == "resolving"

    small = Case(client, auth, world, refund_budget=money(1_000))
    small.open()
    over = small.act(small.seller, "accept_claim", expect=422)
    assert over["code"] == "refund.over_budget"
    assert small.get(small.seller)["status"] == "open"  # nothing changed
    none = Case(client, auth, world)
    none.open()
    assert none.act(none.seller, "accept_claim", expect=422)["code"] == "refund.over_budget"
    # A non-money claim needs no budget.
    swap = Case(client, auth, world)
    swap.open(requested={"type": "replacement"})
    swap.act(swap.seller, "accept_claim")
    assert swap.dispute["status"] == "resolved"


def test_invalid_transitions_list_the_allowed_ones(case: Case) -> None:
    case.open()
    refused = case.act(case.buyer, "accept_offer", expect=409)
    assert refused["code"] == "dispute.invalid_transition"
    assert refused["allowed_actions"] == ["escalate", "withdraw"]
    # RFC 9457: `status` is the HTTP status; the dispute's own status is an extension member.
    assert (refused["status"], refused["dispute_status"]) == (409, "open")
    assert case.act(case.buyer, "propose", expect=403, resolution=REFUND_PARTIAL)["code"] == "forbidden"
    bad = case.act(case.buyer, "teleport", expect=400)
    assert bad["code"] == "validation_error"
    over = case.act(case.seller, "propose", expect=422, resolution={**REFUND_PARTIAL, "amount": money(6000)})
    assert over["code"] == "refund.exceeds_refundable"
    funded = case.act(case.seller, "propose", expect=403, resolution={**REFUND_PARTIAL, "funded_by": "operator"})
    assert funded["code"] == "refund.funding_not_allowed"
    currency = case.act(case.seller, "propose", expect=422, resolution={**REFUND_PARTIAL, "amount": money(100, "USD")})
    assert currency["code"] == "money.currency_mismatch"
    assert [e["action"] for e in case.events()] == ["open"]  # refusals leave no trace


def test_withdraw_closes_and_unfreezes_escrow_then_csat(client: TestClient[Any], case: Case) -> None:
    case.open()
    case.act(case.buyer, "withdraw")
    assert (case.dispute["status"], case.dispute["outcome"]) == ("closed", "withdrawn")
    order = client.get(f"/v1/orders/{case.order_id}", headers=case.buyer).json()
    assert order["escrow"]["status"] == "held"
    csat = client.post(f"/v1/disputes/{case.dispute['dispute_id']}/csat", json={"score": 5}, headers=case.buyer)
    assert csat.status_code == 409
    # A new dispute on the same line is possible once the first is closed.
    case.open(reason="damaged", requested={"type": "replacement"})
    case.act(case.seller, "accept_claim")
    path = f"/v1/disputes/{case.dispute['dispute_id']}/csat"
    assert client.post(path, json={"score": 6}, headers=case.buyer).status_code == 400
    assert client.post(path, json={"score": 4}, headers=case.seller).status_code == 403
    assert client.post(path, json={"score": 4, "comment": "quick"}, headers=case.buyer).status_code == 201
    assert client.post(path, json={"score": 5}, headers=case.buyer).json()["code"] == "dispute.already_rated"


def test_escrow_is_frozen_until_resolved_and_again_on_reopen(client: TestClient[Any], case: Case) -> None:
    def escrow() -> str:
        order = client.get(f"/v1/orders/{case.order_id}", headers=case.buyer).json()
        return str(order["escrow"]["status"])

    case.open()
    case.act(case.buyer, "escalate", note="help")
    case.act(case.arbitrator, "claim")
    assert escrow() == "frozen"
    case.act(case.arbitrator, "decide", resolution={"type": "deny", "at_fault": "buyer"}, rationale="misuse")
    assert (case.dispute["status"], escrow()) == ("resolved", "held")  # released once the hold has passed
    case.act(case.buyer, "reopen", note="It broke again.")
    assert (case.dispute["status"], escrow()) == ("escalated", "frozen")


def test_eight_concurrent_claims_have_one_winner(client: TestClient[Any], auth: Tokens, case: Case) -> None:
    case.open()
    case.act(case.buyer, "escalate", note="help")
    agents = [auth("agent", uid("agent")) for _ in range(8)]
    path = f"/v1/disputes/{case.dispute['dispute_id']}/actions"
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda h: client.post(path, json={"action": "claim"}, headers=h), agents))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 7
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"dispute.already_claimed"}
    assert [e["action"] for e in case.events()].count("claim") == 1


def test_concurrent_decisions_apply_once(client: TestClient[Any], case: Case) -> None:
    case.open()
    case.act(case.buyer, "escalate", note="help")
    case.act(case.arbitrator, "claim")
    path = f"/v1/disputes/{case.dispute['dispute_id']}/actions"
    decisions = [
        {"action": "decide", "resolution": {"type": "deny", "at_fault": "buyer"}, "rationale": "a"},
        {"action": "decide", "resolution": {"type": "replacement", "at_fault": "seller"}, "rationale": "b"},
    ] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda b: client.post(path, json=b, headers=case.arbitrator), decisions))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    assert [e["action"] for e in case.events()].count("decide") == 1


def test_the_queue_is_for_staff_and_sorted_by_urgency(client: TestClient[Any], auth: Tokens, world: World) -> None:
    shop = world.seller()
    made = []
    for reason in ("other", "not_received", "defective"):
        case = Case(client, auth, world)
        case.shop = shop
        case.order = world.order(case.buyer_id, shop)
        case.order_id = case.order["order_id"]
        case.seller = auth("seller", uid("member"), seller_id=shop)
        case.open(reason=reason)
        case.act(case.buyer, "escalate", note="help")
        made.append(case)
    agent = made[0].agent
    assert client.get("/v1/queue", headers=made[0].buyer).status_code == 403
    assert client.get("/v1/queue", headers=made[0].finance).status_code == 403
    page = client.get("/v1/queue", params={"seller_id": shop}, headers=agent).json()
    ids = [d["dispute_id"] for d in page["items"]]
    # The critical one has the nearest first-response due time (1 h against 4 h).
    assert ids[0] == made[1].dispute["dispute_id"]
    assert set(ids) == {c.dispute["dispute_id"] for c in made}
    assert all(d["sla"]["first_response_due"] and d["overdue"] is False for d in page["items"])

    made[2].act(made[2].arbitrator, "claim")
    in_review = client.get("/v1/queue", params={"seller_id": shop, "status": "in_review"}, headers=agent).json()
    assert [d["dispute_id"] for d in in_review["items"]] == [made[2].dispute["dispute_id"]]
    first = client.get("/v1/queue", params={"seller_id": shop, "limit": 2}, headers=agent).json()
    rest = client.get(
        "/v1/queue", params={"seller_id": shop, "limit": 2, "cursor": first["next_cursor"]}, headers=agent
    ).json()
    assert [d["dispute_id"] for d in first["items"] + rest["items"]] == [
        d["dispute_id"] for d in client.get("/v1/queue", params={"seller_id": shop}, headers=agent).json()["items"]
    ]
    assert rest["next_cursor"] is None
