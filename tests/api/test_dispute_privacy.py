"""What each role sees of a dispute, on every way it goes out: the dispute, lists, the queue, action
responses, the audit timeline, threads and messages, refunds, and `dispute.updated` on the WebSocket.

The rule (docs/api.md, "What each role sees of a dispute"): buyers never see funding or operator staff
ids; text written with an action is shown to whoever may read the conversation it belongs to (finance and
the marketplace read none); a request_info question stays in its private thread; a promo code is read
by its buyer and operator staff only.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Tokens, World, money, uid

Headers = dict[str, str]
QUESTION = "Private question for the shop: what did the courier say? Q-7b1e"
ESCALATE_NOTE = "Buyer to the operator only: the seller is rude. N-3c9a"
RATIONALE = "The photos show a broken base. R-51d2"
CSAT_COMMENT = "The agent was helpful. C-8e44"
RELEASE_NOTE = "Handing over, I am off today. I-77f0"
APPEAL_NOTE = "Shop to the operator only: the buyer broke it. A-0d6b"
SPLIT = {
    "type": "refund_partial",
    "amount": money(3_000),
    "funded_by": "split",
    "seller_share": money(1_000),
    "at_fault": "seller",
}


class Cast:
    """A dispute and everyone who might try to read it."""

    def __init__(self, client: TestClient[Any], auth: Tokens, world: World) -> None:
        self.client = client
        self.buyer_id = uid("buyer")
        self.shop = world.seller()
        self.order_id = world.order(self.buyer_id, self.shop, unit=2500, qty=2)["order_id"]
        self.agent_id, self.arbitrator_id = uid("agent"), uid("arb")
        self.roles: dict[str, Headers] = {
            "buyer": auth("buyer", self.buyer_id, name="Camille"),
            "seller": auth("seller", uid("member"), seller_id=self.shop, name="Inès"),
            "other_shop": auth("seller", uid("member"), seller_id=world.seller()),
            "agent": auth("agent", self.agent_id, name="Alice"),
            "arbitrator": auth("arbitrator", self.arbitrator_id, name="Bruno"),
            "finance": auth("finance", uid("fin")),
            "marketplace": auth.marketplace,
        }
        self.dispute_id = ""

    def __getattr__(self, role: str) -> Headers:
        return self.roles[role]

    def open(self) -> None:
        body = {
            "order_id": self.order_id,
            "reason": "defective",
            "requested": {"type": "refund_full"},
            "description": "The kettle stopped heating after two days.",
        }
        response = self.client.post("/v1/disputes", json=body, headers=self.buyer)
        assert response.status_code == 201, response.text
        self.dispute_id = response.json()["dispute_id"]

    def act(self, who: Headers, action: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post(
            f"/v1/disputes/{self.dispute_id}/actions", json={"action": action, **fields}, headers=who
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def get(self, path: str, who: Headers, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=who)
        assert response.status_code == 200, response.text
        return response.json()

    def dispute(self, who: Headers) -> dict[str, Any]:
        return self.get(f"/v1/disputes/{self.dispute_id}", who)  # type: ignore[no-any-return]

    def listed(self, who: Headers) -> dict[str, Any]:
        [found] = self.get("/v1/disputes", who, order_id=self.order_id)["items"]
        return found  # type: ignore[no-any-return]

    def events(self, who: Headers) -> list[dict[str, Any]]:
        return self.get(f"/v1/disputes/{self.dispute_id}/events", who)["items"]  # type: ignore[no-any-return]

    def everything_readable(self, who: Headers) -> str:
        """Every response this caller gets about the dispute, its threads, messages and refunds, as text."""
        seen: list[Any] = []
        for path in (f"/v1/disputes/{self.dispute_id}", f"/v1/disputes/{self.dispute_id}/events", "/v1/disputes"):
            response = self.client.get(path, headers=who)
            seen.append(response.json() if response.status_code == 200 else None)
        threads = self.client.get("/v1/threads", params={"dispute_id": self.dispute_id}, headers=who)
        if threads.status_code == 200:
            for thread in threads.json()["items"]:
                seen.append(thread)
                seen.append(self.get(f"/v1/threads/{thread['thread_id']}/messages", who))
        refunds = self.client.get("/v1/refunds", params={"order_id": self.order_id}, headers=who)
        if refunds.status_code == 200:
            seen.append(refunds.json())
            for refund in refunds.json()["items"]:
                seen.append(self.get(f"/v1/refunds/{refund['refund_id']}", who))
        return json.dumps(seen, ensure_ascii=False)


@pytest.fixture
def cast(client: TestClient[Any], auth: Tokens, world: World) -> Cast:
    return Cast(client, auth, world)


def timeline_text(cast: Cast, role: str) -> str:
    response = cast.client.get(f"/v1/disputes/{cast.dispute_id}/events", headers=cast.roles[role])
    return response.text if response.status_code == 200 else ""


# --- item 1: private text through the audit timeline -----------------------------------------------------


def test_a_request_info_question_is_read_only_where_its_private_thread_is(cast: Cast) -> None:
    cast.open()
    cast.act(cast.buyer, "escalate", note="help")
    cast.act(cast.arbitrator, "claim")
    cast.act(cast.arbitrator, "request_info", party="seller", question=QUESTION)

    for role in ("buyer", "finance"):
        assert QUESTION not in cast.everything_readable(cast.roles[role]), role
        [asked] = [e for e in cast.events(cast.roles[role]) if e["action"] == "request_info"]
        assert asked["data"] == {"party": "seller"}, role  # that a question was asked, not what or where
    for role in ("other_shop", "marketplace"):
        assert QUESTION not in cast.everything_readable(cast.roles[role]), role

    # The audit event holds a reference to the message, which its readers open in the thread.
    for role in ("seller", "agent", "arbitrator"):
        [asked] = [e for e in cast.events(cast.roles[role]) if e["action"] == "request_info"]
        assert set(asked["data"]) == {"party", "thread_id", "message_id"}
        assert QUESTION not in json.dumps(asked)
        messages = cast.get(f"/v1/threads/{asked['data']['thread_id']}/messages", cast.roles[role])["items"]
        [message] = [m for m in messages if m["message_id"] == asked["data"]["message_id"]]
        assert message["body"] == QUESTION


def test_text_written_with_actions_follows_the_conversation_it_belongs_to(cast: Cast) -> None:
    cast.open()
    cast.act(cast.buyer, "escalate", note=ESCALATE_NOTE)
    cast.act(cast.agent, "claim")
    cast.act(cast.agent, "release", note=RELEASE_NOTE)
    cast.act(cast.arbitrator, "claim")
    cast.act(cast.arbitrator, "decide", resolution={"type": "deny", "at_fault": "buyer"}, rationale=RATIONALE)
    rated = cast.client.post(
        f"/v1/disputes/{cast.dispute_id}/csat", json={"score": 4, "comment": CSAT_COMMENT}, headers=cast.buyer
    )
    assert rated.status_code == 201, rated.text
    cast.act(cast.seller, "appeal", note=APPEAL_NOTE)

    # Who reads which text: its conversation's readers (docs/api.md). Finance reads no conversation.
    readers = {
        ESCALATE_NOTE: {"buyer", "agent", "arbitrator"},  # buyer -> operator
        RELEASE_NOTE: {"agent", "arbitrator"},  # operator staff only
        RATIONALE: {"buyer", "seller", "agent", "arbitrator"},  # the decision, to both parties
        APPEAL_NOTE: {"seller", "agent", "arbitrator"},  # shop -> operator
        CSAT_COMMENT: {"buyer", "agent", "arbitrator"},  # the buyer's rating of the operator
    }
    for role in ("buyer", "seller", "agent", "arbitrator", "finance"):
        text = timeline_text(cast, role)
        for written, allowed in readers.items():
            assert (written in text) == (role in allowed), (role, written)
    for role in ("other_shop", "marketplace"):
        assert timeline_text(cast, role) == ""
    # What is not text stays visible to every reader of the dispute.
    [rating] = [e for e in cast.events(cast.finance) if e["action"] == "csat"]
    assert rating["data"] == {"score": 4}


# --- item 3: what a dispute shows, per role ----------------------------------------------------------------


def test_buyers_never_see_funding_or_staff_ids_on_any_dispute_path(client: TestClient[Any], cast: Cast) -> None:
    cast.open()
    cast.act(cast.seller, "escalate", note="no")
    claimed = cast.act(cast.arbitrator, "claim")
    assert claimed["assignee_id"] == cast.arbitrator_id  # the actor itself is staff

    def funding_of(dispute: dict[str, Any]) -> dict[str, Any]:
        return {k: dispute["resolution"].get(k) for k in ("funded_by", "seller_share")}

    cast.act(cast.arbitrator, "decide", resolution=SPLIT, rationale=RATIONALE)
    shown = {"funded_by": "split", "seller_share": money(1_000)}
    hidden = {"funded_by": None, "seller_share": None}
    for role, funding in (("buyer", hidden), ("seller", shown), ("arbitrator", shown), ("finance", shown)):
        who = cast.roles[role]
        for dispute in (cast.dispute(who), cast.listed(who)):
            assert funding_of(dispute) == funding, role
            assert dispute["resolution"]["amount"] == money(3_000)
        [decided] = [e for e in cast.events(who) if e["action"] == "decide"]
        assert {k: decided["data"]["resolution"].get(k) for k in funding} == funding, role
        [refund] = cast.get("/v1/refunds", who, order_id=cast.order_id)["items"]
        assert (refund["funded_by"], refund["seller_share"]) == tuple(funding.values()), role
        assert cast.get(f"/v1/refunds/{refund['refund_id']}", who)["funded_by"] == funding["funded_by"]

    staff_ids = {cast.arbitrator_id}
    for role in ("buyer", "seller"):
        who = cast.roles[role]
        text = json.dumps([cast.dispute(who), cast.listed(who), cast.events(who)])
        assert not any(staff_id in text for staff_id in staff_ids), role
        [claim] = [e for e in cast.events(cast.roles[role]) if e["action"] == "claim"]
        assert claim["actor"] == {"id": None, "role": "arbitrator", "name": "Bruno"}
        # The parties still see each other as they are.
        [opened] = [e for e in cast.events(cast.roles[role]) if e["action"] == "open"]
        assert opened["actor"]["id"] == cast.buyer_id
    for role in ("agent", "arbitrator", "finance"):
        [claim] = [e for e in cast.events(cast.roles[role]) if e["action"] == "claim"]
        assert claim["actor"]["id"] == cast.arbitrator_id


def test_the_assignee_is_an_operator_matter(client: TestClient[Any], cast: Cast) -> None:
    cast.open()
    cast.act(cast.buyer, "escalate", note="help")
    cast.act(cast.agent, "claim")
    for role in ("buyer", "seller"):
        assert cast.dispute(cast.roles[role])["assignee_id"] is None
        assert cast.listed(cast.roles[role])["assignee_id"] is None
        # Filtering by it would tell the same thing.
        probe = client.get("/v1/disputes", params={"assignee_id": cast.agent_id}, headers=cast.roles[role])
        assert (probe.status_code, probe.json()["code"]) == (403, "forbidden")
    for role in ("agent", "arbitrator", "finance"):
        assert cast.dispute(cast.roles[role])["assignee_id"] == cast.agent_id
    [queued] = [d for d in cast.get("/v1/queue", cast.arbitrator)["items"] if d["dispute_id"] == cast.dispute_id]
    assert queued["assignee_id"] == cast.agent_id
    # The buyer's own action response carries the same view as its GET.
    assert cast.act(cast.buyer, "withdraw")["assignee_id"] is None


def test_an_offers_funding_is_hidden_from_the_buyer_it_is_made_to(cast: Cast) -> None:
    cast.open()
    budget = cast.client.put(
        f"/v1/sellers/{cast.shop}",
        json={"name": "Shop", "settings": {"refund_budget": money(10_000)}},
        headers=cast.marketplace,
    )
    assert budget.status_code in (200, 201), budget.text
    offer = {"type": "refund_partial", "amount": money(1_500), "funded_by": "seller"}
    as_seller = cast.act(cast.seller, "propose", resolution=offer)
    assert as_seller["offer"]["funded_by"] == "seller"
    as_buyer = cast.dispute(cast.buyer)
    assert as_buyer["offer"]["amount"] == money(1_500)
    assert "funded_by" not in as_buyer["offer"]
    assert "seller_share" not in as_buyer["offer"]
    [proposed] = [e for e in cast.events(cast.buyer) if e["action"] == "propose"]
    assert "funded_by" not in proposed["data"]["resolution"]


# --- item 2: promo codes ------------------------------------------------------------------------------------


def promo_decision(cast: Cast) -> str:
    cast.open()
    cast.act(cast.buyer, "escalate", note="help")
    cast.act(cast.arbitrator, "claim")
    resolution = {"type": "promo_code", "amount": money(1_000), "funded_by": "operator", "at_fault": "carrier"}
    cast.act(cast.arbitrator, "decide", resolution=resolution, rationale="late parcel")
    [refund] = cast.get("/v1/refunds", cast.buyer, order_id=cast.order_id)["items"]
    code: str = refund["promo_code"]
    assert code
    return code


def test_a_promo_code_is_never_readable_by_the_shop(cast: Cast) -> None:
    code = promo_decision(cast)
    for role in ("seller", "other_shop"):
        assert code not in cast.everything_readable(cast.roles[role]), role
    for role in ("buyer", "agent", "arbitrator"):
        assert code in cast.everything_readable(cast.roles[role]), role

    # It is posted to the buyer alone, by the service itself, in the dispute's operator_buyer thread.
    threads = cast.get("/v1/threads", cast.buyer, dispute_id=cast.dispute_id)["items"]
    [private] = [t for t in threads if t["audience"] == "operator_buyer"]
    [notice] = cast.get(f"/v1/threads/{private['thread_id']}/messages", cast.buyer)["items"]
    assert code in notice["body"]
    assert notice["author"] == {"id": "system", "role": "system", "name": "Marketplace after-sales"}
    shared = cast.get(f"/v1/threads/{cast.dispute(cast.buyer)['thread_id']}/messages", cast.buyer)["items"]
    assert all(code not in m["body"] for m in shared)


def test_a_shop_granting_a_promo_code_does_not_read_it(client: TestClient[Any], cast: Cast) -> None:
    cast.open()
    body = {
        "order_id": cast.order_id,
        "kind": "promo_code",
        "amount": money(500),
        "funded_by": "seller",
        "reason": "sorry",
        "dispute_id": cast.dispute_id,
    }
    budget = client.put(
        f"/v1/sellers/{cast.shop}",
        json={"name": "Shop", "settings": {"refund_budget": money(10_000)}},
        headers=cast.marketplace,
    )
    assert budget.status_code in (200, 201), budget.text
    granted = client.post("/v1/refunds", json=body, headers={**cast.seller, "Idempotency-Key": uid("k")})
    assert granted.status_code == 201, granted.text
    assert granted.json()["promo_code"] is None
    [refund] = cast.get("/v1/refunds", cast.buyer, order_id=cast.order_id)["items"]
    assert refund["promo_code"]
    assert refund["promo_code"] not in cast.everything_readable(cast.seller)


# --- the WebSocket: dispute.updated --------------------------------------------------------------------------


def dispute_frames(client: TestClient[Any], who: Headers, dispute_id: str, count: int, after: int) -> list[Any]:
    """The first ``count`` dispute.updated frames about this dispute, replayed after event ``after``."""
    token = who["Authorization"].removeprefix("Bearer ")
    deadline = time.monotonic() + 20
    with client.websocket_connect(f"/v1/ws?token={token}&after_event_id={after}") as ws:
        assert ws.receive_json(timeout=10)["type"] == "ready"
        found: list[Any] = []
        while len(found) < count and time.monotonic() < deadline:
            frame = ws.receive_json(timeout=10)
            if frame.get("type") == "dispute.updated" and frame["data"]["dispute_id"] == dispute_id:
                found.append(frame["data"])
        return found


def test_dispute_updated_events_show_each_reader_its_own_view(client: TestClient[Any], cast: Cast) -> None:
    with client.websocket_connect(f"/v1/ws?token={cast.agent['Authorization'][7:]}") as ws:
        before = ws.receive_json(timeout=10)["last_event_id"]
    cast.open()
    cast.act(cast.buyer, "escalate", note=ESCALATE_NOTE)
    cast.act(cast.arbitrator, "claim")
    for role, sees_ids in (("buyer", False), ("seller", False), ("agent", True), ("finance", True)):
        frames = dispute_frames(client, cast.roles[role], cast.dispute_id, 3, before)
        assert [f["action"] for f in frames] == ["open", "escalate", "claim"], role
        claim = frames[-1]
        assert claim["assignee_id"] == (cast.arbitrator_id if sees_ids else None), role
        assert claim["actor"] == {"id": cast.arbitrator_id if sees_ids else None, "role": "arbitrator"}, role
        assert frames[0]["actor"]["id"] == cast.buyer_id
        assert ESCALATE_NOTE not in json.dumps(frames)


# --- outbound webhooks: business data for the marketplace, no conversation text ------------------------------


def test_webhooks_give_the_marketplace_business_data_but_no_conversation_text(
    client: TestClient[Any], auth: Tokens, cast: Cast
) -> None:
    admin = auth("admin", uid("admin"))
    subscribed = client.post(
        "/v1/webhook-endpoints", json={"url": "https://marketplace.example/hooks", "event_types": ["*"]}, headers=admin
    )
    assert subscribed.status_code == 201, subscribed.text
    endpoint = subscribed.json()["endpoint_id"]
    try:
        cast.open()
        cast.act(cast.buyer, "escalate", note=ESCALATE_NOTE)
        cast.act(cast.arbitrator, "claim")
        cast.act(cast.arbitrator, "request_info", party="seller", question=QUESTION)
        cast.act(cast.arbitrator, "decide", resolution=SPLIT, rationale=RATIONALE)
        listed = cast.get(f"/v1/webhook-endpoints/{endpoint}/deliveries", admin, limit=200)["items"]
    finally:
        client.delete(f"/v1/webhook-endpoints/{endpoint}", headers=admin)
    sent = [json.loads(d["payload"]) for d in listed]
    ours = [e for e in sent if e["data"].get("dispute_id") == cast.dispute_id]
    assert {e["type"] for e in ours} >= {"dispute.opened", "dispute.escalated", "dispute.decided"}
    text = json.dumps(ours)
    for written in (ESCALATE_NOTE, QUESTION, RATIONALE):
        assert written not in text
    [decided] = [e for e in ours if e["type"] == "dispute.decided"]
    assert decided["data"]["resolution"]["seller_share"] == money(1_000)
    assert decided["data"]["assignee_id"] == cast.arbitrator_id


# --- messages: operator staff by role and name ---------------------------------------------------------------


def test_a_staff_members_message_shows_buyers_and_shops_its_role_and_name_not_its_id(
    client: TestClient[Any], cast: Cast
) -> None:
    with client.websocket_connect(f"/v1/ws?token={cast.agent['Authorization'][7:]}") as ws:
        before = ws.receive_json(timeout=10)["last_event_id"]
    cast.open()
    thread_id = cast.dispute(cast.buyer)["thread_id"]
    posted = client.post(
        f"/v1/threads/{thread_id}/messages", json={"body": "We are looking into it."}, headers=cast.arbitrator
    )
    assert posted.status_code == 201, posted.text
    message_id = posted.json()["message_id"]
    for role, sees_ids in (("buyer", False), ("seller", False), ("agent", True)):
        [message] = [
            m
            for m in cast.get(f"/v1/threads/{thread_id}/messages", cast.roles[role])["items"]
            if m["message_id"] == message_id
        ]
        assert message["author"] == {
            "id": cast.arbitrator_id if sees_ids else None,
            "role": "arbitrator",
            "name": message["author"]["name"],
        }, role
        token = cast.roles[role]["Authorization"].removeprefix("Bearer ")
        with client.websocket_connect(f"/v1/ws?token={token}&after_event_id={before}") as ws:
            assert ws.receive_json(timeout=10)["type"] == "ready"
            frame: dict[str, Any] = {}
            while frame.get("data", {}).get("message_id") != message_id:
                frame = ws.receive_json(timeout=10)
        assert frame["data"]["author"]["id"] == (cast.arbitrator_id if sees_ids else None), role
    # The buyer's own messages keep its id: only operator staff are shown by role.
    [first] = cast.get(f"/v1/threads/{thread_id}/messages", cast.seller)["items"][:1]
    assert first["author"]["id"] == cast.buyer_id
