"""The full matrix of the audience table (docs/api.md, Threads): every role x every audience x own/foreign
order, for get, list, messages and post. Expectations are written from the documented table, not from the policy."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Tokens, World, uid

AUDIENCES = ["tripartite", "buyer_seller", "operator_seller", "operator_buyer", "internal"]

# (caller, audiences it may read and write) — straight from the audience table of docs/api.md.
EXPECTED: dict[str, set[str]] = {
    "own buyer": {"tripartite", "buyer_seller", "operator_buyer"},
    "other buyer": set(),
    "own shop": {"tripartite", "buyer_seller", "operator_seller"},
    "other shop": set(),
    "agent": set(AUDIENCES),
    "arbitrator": set(AUDIENCES),
    "admin": set(AUDIENCES),
}
NO_THREADS_AT_ALL = ["finance", "marketplace"]


@pytest.fixture(scope="module")
def matrix(client: TestClient[Any], auth: Tokens) -> dict[str, Any]:
    world = World(client, auth)
    buyer, other_buyer = uid("buyer"), uid("buyer")
    shop, other_shop = world.seller(), world.seller()
    order = world.order(buyer, shop)["order_id"]
    world.order(other_buyer, other_shop)
    admin = auth("admin", "admin-matrix", name="Ada")
    threads = {}
    for audience in AUDIENCES:
        response = client.post(
            "/v1/threads",
            json={"audience": audience, "subject": f"about {audience}", "body": "first", "order_id": order},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        threads[audience] = response.json()["thread_id"]
    callers = {
        "own buyer": auth("buyer", buyer),
        "other buyer": auth("buyer", other_buyer),
        "own shop": auth("seller", uid("member"), seller_id=shop),
        "other shop": auth("seller", uid("member"), seller_id=other_shop),
        "agent": auth("agent"),
        "arbitrator": auth("arbitrator"),
        "admin": auth("admin"),
        "finance": auth("finance"),
        "marketplace": auth.marketplace,
    }
    return {"threads": threads, "callers": callers, "order": order}


@pytest.mark.parametrize("caller", sorted(EXPECTED))
@pytest.mark.parametrize("audience", AUDIENCES)
def test_get_messages_and_post_follow_the_audience_table(
    client: TestClient[Any], matrix: dict[str, Any], caller: str, audience: str
) -> None:
    headers, thread_id = matrix["callers"][caller], matrix["threads"][audience]
    allowed = audience in EXPECTED[caller]
    expected_read = 200 if allowed else 404
    assert client.get(f"/v1/threads/{thread_id}", headers=headers).status_code == expected_read
    messages = client.get(f"/v1/threads/{thread_id}/messages", headers=headers)
    assert messages.status_code == expected_read
    if allowed:
        assert messages.json()["items"][0]["body"] == "first"
    posted = client.post(f"/v1/threads/{thread_id}/messages", json={"body": f"hello from {caller}"}, headers=headers)
    assert posted.status_code == (201 if allowed else 404), posted.text
    if not allowed:
        # An invisible thread looks exactly like a missing one.
        missing = client.get(f"/v1/threads/thr_{uid('none')}", headers=headers)
        assert client.get(f"/v1/threads/{thread_id}", headers=headers).json()["detail"].replace(
            thread_id, "X"
        ) == missing.json()["detail"].replace(missing.json()["detail"].split("'")[1], "X")


@pytest.mark.parametrize("caller", sorted(EXPECTED))
def test_list_contains_exactly_the_visible_threads(
    client: TestClient[Any], matrix: dict[str, Any], caller: str
) -> None:
    headers = matrix["callers"][caller]
    response = client.get("/v1/threads", params={"order_id": matrix["order"], "limit": 200}, headers=headers)
    assert response.status_code == 200
    listed = {item["audience"] for item in response.json()["items"]}
    assert listed == EXPECTED[caller]


@pytest.mark.parametrize("caller", NO_THREADS_AT_ALL)
def test_finance_and_marketplace_get_403_on_every_thread_endpoint(
    client: TestClient[Any], matrix: dict[str, Any], caller: str
) -> None:
    headers = matrix["callers"][caller]
    thread_id = matrix["threads"]["tripartite"]
    calls = [
        client.get("/v1/threads", headers=headers),
        client.get(f"/v1/threads/{thread_id}", headers=headers),
        client.get(f"/v1/threads/{thread_id}/messages", headers=headers),
        client.post(f"/v1/threads/{thread_id}/messages", json={"body": "x"}, headers=headers),
        client.post("/v1/threads", json={"audience": "internal", "subject": "s", "body": "b"}, headers=headers),
    ]
    for response in calls:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"


# Who may open which audience (docs/api.md, Threads): buyer -> tripartite, buyer_seller (own order),
# operator_buyer; seller -> tripartite, buyer_seller (own order), operator_seller; staff -> any.
OPEN_EXPECTED = {
    "own buyer": {
        "tripartite": 201,
        "buyer_seller": 201,
        "operator_buyer": 201,
        "operator_seller": 403,
        "internal": 403,
    },
    "own shop": {
        "tripartite": 201,
        "buyer_seller": 201,
        "operator_seller": 201,
        "operator_buyer": 403,
        "internal": 403,
    },
    "other buyer": dict.fromkeys(AUDIENCES, 404),
    "other shop": dict.fromkeys(AUDIENCES, 404),
    "agent": dict.fromkeys(AUDIENCES, 201),
}


@pytest.mark.parametrize("caller", sorted(OPEN_EXPECTED))
@pytest.mark.parametrize("audience", AUDIENCES)
def test_who_may_open_which_audience_on_an_order(
    client: TestClient[Any], matrix: dict[str, Any], caller: str, audience: str
) -> None:
    response = client.post(
        "/v1/threads",
        json={"audience": audience, "subject": "s", "body": "b", "order_id": matrix["order"]},
        headers=matrix["callers"][caller],
    )
    assert response.status_code == OPEN_EXPECTED[caller][audience], response.text
