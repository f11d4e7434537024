"""Threads and messages: creation rules, pagination, read cursors, unread counts, hostile input."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Tokens, World, open_thread, uid


@pytest.fixture
def party(client: TestClient[Any], auth: Tokens, world: World) -> dict[str, Any]:
    buyer, shop = uid("buyer"), world.seller()
    order = world.order(buyer, shop)["order_id"]
    return {
        "buyer": auth("buyer", buyer, name="Camille"),
        "seller": auth("seller", uid("member"), seller_id=shop, name="Inès"),
        "agent": auth("agent", uid("agent"), name="Alice"),
        "order": order,
        "buyer_id": buyer,
        "shop": shop,
    }


def test_opening_returns_the_thread_with_its_first_message(client: TestClient[Any], party: dict[str, Any]) -> None:
    thread = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])
    assert thread["audience"] == "tripartite"
    assert (thread["buyer_id"], thread["seller_id"], thread["order_id"]) == (
        party["buyer_id"],
        party["shop"],
        party["order"],
    )
    assert thread["first_message"]["body"] == "It has not arrived."
    assert thread["first_message"]["author"] == {"id": party["buyer_id"], "role": "buyer", "name": "Camille"}
    assert thread["unread_count"] == 0
    assert thread["awaiting_reply_from"] == "seller"


def test_conversation_flow_unread_counts_and_awaiting(client: TestClient[Any], party: dict[str, Any]) -> None:
    thread = open_thread(client, party["buyer"], audience="buyer_seller", order_id=party["order"])
    tid = thread["thread_id"]

    seller_view = client.get(f"/v1/threads/{tid}", headers=party["seller"]).json()
    assert seller_view["unread_count"] == 1
    assert seller_view["awaiting_reply_from"] == "seller"

    reply = client.post(f"/v1/threads/{tid}/messages", json={"body": "  Shipped yesterday.  "}, headers=party["seller"])
    assert reply.status_code == 201
    assert reply.json()["body"] == "Shipped yesterday."

    buyer_view = client.get(f"/v1/threads/{tid}", headers=party["buyer"]).json()
    assert (buyer_view["unread_count"], buyer_view["awaiting_reply_from"]) == (1, "buyer")
    # The seller's own message does not count as unread for the seller.
    assert client.get(f"/v1/threads/{tid}", headers=party["seller"]).json()["unread_count"] == 0

    unread = client.get("/v1/threads", params={"unread": "true"}, headers=party["buyer"]).json()["items"]
    assert [t["thread_id"] for t in unread] == [tid]

    read = client.post(
        f"/v1/threads/{tid}/read", json={"message_id": reply.json()["message_id"]}, headers=party["buyer"]
    )
    assert read.status_code == 204
    assert client.get(f"/v1/threads/{tid}", headers=party["buyer"]).json()["unread_count"] == 0
    assert client.get("/v1/threads", params={"unread": "true"}, headers=party["buyer"]).json()["items"] == []


def test_read_cursor_only_moves_forward(client: TestClient[Any], party: dict[str, Any]) -> None:
    thread = open_thread(client, party["buyer"], audience="buyer_seller", order_id=party["order"])
    tid = thread["thread_id"]
    ids = [
        client.post(f"/v1/threads/{tid}/messages", json={"body": f"m{i}"}, headers=party["seller"]).json()["message_id"]
        for i in range(3)
    ]
    assert (
        client.post(f"/v1/threads/{tid}/read", json={"message_id": ids[2]}, headers=party["buyer"]).status_code == 204
    )
    assert (
        client.post(f"/v1/threads/{tid}/read", json={"message_id": ids[0]}, headers=party["buyer"]).status_code == 204
    )
    assert client.get(f"/v1/threads/{tid}", headers=party["buyer"]).json()["unread_count"] == 0


def test_read_with_a_message_of_another_thread_is_400(client: TestClient[Any], party: dict[str, Any]) -> None:
    first = open_thread(client, party["buyer"], audience="buyer_seller", order_id=party["order"])
    second = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])
    response = client.post(
        f"/v1/threads/{first['thread_id']}/read",
        json={"message_id": second["first_message"]["message_id"]},
        headers=party["buyer"],
    )
    assert response.status_code == 400


def test_messages_are_paged_oldest_first_with_after(client: TestClient[Any], party: dict[str, Any]) -> None:
    tid = open_thread(client, party["agent"], audience="internal")["thread_id"]
    for i in range(5):
        client.post(f"/v1/threads/{tid}/messages", json={"body": f"note {i}"}, headers=party["agent"])
    page = client.get(f"/v1/threads/{tid}/messages", params={"limit": 4}, headers=party["agent"]).json()
    assert [m["body"] for m in page["items"]] == ["It has not arrived.", "note 0", "note 1", "note 2"]
    assert page["next_cursor"] == page["items"][-1]["message_id"]
    rest = client.get(
        f"/v1/threads/{tid}/messages", params={"after": page["next_cursor"], "limit": 4}, headers=party["agent"]
    ).json()
    assert [m["body"] for m in rest["items"]] == ["note 3", "note 4"]
    assert rest["next_cursor"] is None


def test_thread_list_is_newest_activity_first_with_a_stable_cursor(
    client: TestClient[Any], party: dict[str, Any]
) -> None:
    made = [
        open_thread(client, party["buyer"], audience="operator_buyer", subject=f"t{i}")["thread_id"] for i in range(5)
    ]
    # Activity on the oldest brings it to the top.
    client.post(f"/v1/threads/{made[0]}/messages", json={"body": "bump"}, headers=party["buyer"])
    expected = [made[0], *reversed(made[1:])]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "audience": "operator_buyer"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/threads", params=params, headers=party["buyer"]).json()
        seen += [t["thread_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": 0}, 400),
        ({"limit": 201}, 400),
        ({"limit": "ten"}, 400),
        ({"cursor": "garbage!"}, 400),
        ({"audience": "everyone"}, 400),
    ],
)
def test_bad_list_parameters_are_400(
    client: TestClient[Any], party: dict[str, Any], params: dict[str, Any], status: int
) -> None:
    response = client.get("/v1/threads", params=params, headers=party["buyer"])
    assert response.status_code == status, response.text
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [
        {"body": ""},
        {"body": "   \n\t "},
        {"body": "x" * 10_001},
        {"body": "nul\x00byte"},
        {},
        {"body": 12},
        {"body": "ok", "author": {"id": "someone-else"}},
        {"body": "ok", "macro_id": "mac_x"},
    ],
)
def test_bad_message_bodies_are_400_and_store_nothing(
    client: TestClient[Any], party: dict[str, Any], body: dict[str, Any]
) -> None:
    tid = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])["thread_id"]
    response = client.post(f"/v1/threads/{tid}/messages", json=body, headers=party["buyer"])
    assert response.status_code == 400, response.text
    messages = client.get(f"/v1/threads/{tid}/messages", headers=party["buyer"]).json()["items"]
    assert len(messages) == 1


def test_exactly_ten_thousand_characters_is_accepted(client: TestClient[Any], party: dict[str, Any]) -> None:
    tid = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])["thread_id"]
    response = client.post(
        f"/v1/threads/{tid}/messages", json={"body": " " + "é" * 10_000 + " "}, headers=party["buyer"]
    )
    assert response.status_code == 201


HOSTILE = [
    "'; DROP TABLE messages; --",
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "\u202egnp.exe\u202c right-to-left override",
    "{order_id} {__class__} %s %(x)s",
    "emoji 🧯 and 中文 and \u200b zero width",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_and_returned_literally(
    client: TestClient[Any], party: dict[str, Any], text: str
) -> None:
    thread = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"], subject=text[:200])
    posted = client.post(f"/v1/threads/{thread['thread_id']}/messages", json={"body": text}, headers=party["buyer"])
    assert posted.status_code == 201
    bodies = [
        m["body"]
        for m in client.get(f"/v1/threads/{thread['thread_id']}/messages", headers=party["seller"]).json()["items"]
    ]
    assert bodies[-1] == text.strip()
    assert (
        client.get(f"/v1/threads/{thread['thread_id']}", headers=party["seller"]).json()["subject"]
        == text[:200].strip()
    )


def test_opening_needs_the_right_ids(client: TestClient[Any], auth: Tokens, party: dict[str, Any]) -> None:
    cases = [
        (party["buyer"], {"audience": "tripartite"}, 400),  # no order
        (party["agent"], {"audience": "operator_seller"}, 400),  # no seller_id
        (party["agent"], {"audience": "operator_buyer"}, 400),  # no buyer_id
        (party["agent"], {"audience": "operator_seller", "seller_id": uid("ghost")}, 422),
        (party["buyer"], {"audience": "tripartite", "order_id": "ord-" + uid("none")}, 404),
        (party["seller"], {"audience": "operator_seller", "seller_id": uid("other-shop")}, 422),
        (party["buyer"], {"audience": "operator_buyer", "buyer_id": uid("someone")}, 422),
        (party["buyer"], {"audience": "tripartite", "order_id": party["order"], "seller_id": uid("x")}, 422),
        (party["buyer"], {"audience": "group_chat", "order_id": party["order"]}, 400),
        (party["buyer"], {"audience": "tripartite", "order_id": party["order"], "subject": "  "}, 400),
    ]
    for headers, body, status in cases:
        payload = {"subject": "s", "body": "b", **body}
        response = client.post("/v1/threads", json=payload, headers=headers)
        assert response.status_code == status, (body, response.text)


def test_staff_open_operator_threads_without_an_order(client: TestClient[Any], party: dict[str, Any]) -> None:
    to_seller = open_thread(client, party["agent"], audience="operator_seller", seller_id=party["shop"])
    assert client.get(f"/v1/threads/{to_seller['thread_id']}", headers=party["seller"]).status_code == 200
    assert client.get(f"/v1/threads/{to_seller['thread_id']}", headers=party["buyer"]).status_code == 404
    to_buyer = open_thread(client, party["agent"], audience="operator_buyer", buyer_id=party["buyer_id"])
    assert client.get(f"/v1/threads/{to_buyer['thread_id']}", headers=party["buyer"]).status_code == 200
    assert client.get(f"/v1/threads/{to_buyer['thread_id']}", headers=party["seller"]).status_code == 404
    assert to_buyer["awaiting_reply_from"] == "buyer"


def test_a_seller_opens_an_operator_thread_about_itself(client: TestClient[Any], party: dict[str, Any]) -> None:
    thread = open_thread(client, party["seller"], audience="operator_seller")
    assert thread["seller_id"] == party["shop"]
    assert thread["awaiting_reply_from"] == "operator"


def test_message_post_is_idempotent_with_a_key(client: TestClient[Any], party: dict[str, Any]) -> None:
    tid = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])["thread_id"]
    headers = {**party["buyer"], "Idempotency-Key": uid("k")}
    first = client.post(f"/v1/threads/{tid}/messages", json={"body": "once"}, headers=headers)
    second = client.post(f"/v1/threads/{tid}/messages", json={"body": "once"}, headers=headers)
    assert first.json() == second.json()
    assert len(client.get(f"/v1/threads/{tid}/messages", headers=party["buyer"]).json()["items"]) == 2


def test_concurrent_posts_get_distinct_consecutive_numbers(client: TestClient[Any], party: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tid = open_thread(client, party["buyer"], audience="tripartite", order_id=party["order"])["thread_id"]

    def post(i: int) -> int:
        return client.post(f"/v1/threads/{tid}/messages", json={"body": f"c{i}"}, headers=party["seller"]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(post, range(16))) == {201}
    items = client.get(f"/v1/threads/{tid}/messages", params={"limit": 200}, headers=party["buyer"]).json()["items"]
    assert len(items) == 17
    assert client.get(f"/v1/threads/{tid}", headers=party["buyer"]).json()["unread_count"] == 16
