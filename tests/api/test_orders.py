"""Sellers and orders pushed by the marketplace (docs/api.md, Sellers and orders)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Tokens, World, money, order_body, uid


def put_order(client: TestClient[Any], auth: Tokens, order_id: str, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/orders/{order_id}", json=body, headers=auth.marketplace)


def test_first_push_creates_and_same_body_again_is_200_and_changes_nothing(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    first = put_order(client, auth, order_id, body)
    assert first.status_code == 201, first.text
    again = put_order(client, auth, order_id, body)
    assert again.status_code == 200
    assert again.json() == first.json()
    created = first.json()
    assert created["total"] == money(5000)
    assert created["refunded"] == money(0)
    assert created["refundable"] == money(5000)
    assert created["escrow"] == {"status": "held", "release_at": None}


def test_order_is_visible_to_its_parties_and_staff_only(client: TestClient[Any], auth: Tokens, world: World) -> None:
    seller_id = world.seller()
    buyer_id = uid("buyer")
    order = world.order(buyer_id, seller_id)
    path = f"/v1/orders/{order['order_id']}"
    allowed = {
        "the buyer": auth("buyer", buyer_id),
        "a member of the shop": auth("seller", seller_id=seller_id),
        "an agent": auth("agent"),
        "an arbitrator": auth("arbitrator"),
        "an admin": auth("admin"),
        "finance": auth("finance"),
        "the marketplace": auth.marketplace,
    }
    for who, headers in allowed.items():
        assert client.get(path, headers=headers).status_code == 200, who
    hidden = {
        "another buyer": auth("buyer"),
        "another shop": auth("seller", seller_id=world.seller()),
    }
    for who, headers in hidden.items():
        response = client.get(path, headers=headers)
        assert response.status_code == 404, who
        # Same answer as an order that does not exist: no existence leak.
        missing = client.get("/v1/orders/nope-" + uid("x"), headers=headers).json()
        assert response.json()["code"] == missing["code"] == "not_found"


def test_buyer_does_not_see_commission_or_payment_references(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    buyer_id = uid("buyer")
    order = world.order(buyer_id)
    as_buyer = client.get(f"/v1/orders/{order['order_id']}", headers=auth("buyer", buyer_id)).json()
    assert as_buyer["commission"] is None
    assert as_buyer["payment"] is None
    as_agent = client.get(f"/v1/orders/{order['order_id']}", headers=auth("agent")).json()
    assert as_agent["commission"] == money(500)
    assert as_agent["payment"]["provider"] == "stripe"


@pytest.mark.parametrize("role", ["buyer", "agent", "arbitrator", "finance", "admin"])
def test_only_the_marketplace_pushes_orders(client: TestClient[Any], auth: Tokens, world: World, role: str) -> None:
    body = order_body(uid("buyer"), world.seller())
    response = client.put(f"/v1/orders/{uid('ord')}", json=body, headers=auth(role))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_seller_cannot_push_orders(client: TestClient[Any], auth: Tokens, world: World) -> None:
    seller_id = world.seller()
    response = client.put(
        f"/v1/orders/{uid('ord')}",
        json=order_body(uid("buyer"), seller_id),
        headers=auth("seller", seller_id=seller_id),
    )
    assert response.status_code == 403


def test_lines_must_sum_to_the_total(client: TestClient[Any], auth: Tokens, world: World) -> None:
    body = order_body(uid("buyer"), world.seller(), total=money(4999))
    response = put_order(client, auth, uid("ord"), body)
    assert response.status_code == 422
    assert response.json()["code"] == "order.lines_mismatch"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"total": {"amount": -1, "currency": "EUR"}}, "total.amount"),
        ({"total": {"amount": 49.99, "currency": "EUR"}}, "total.amount"),
        ({"total": {"amount": "5000", "currency": "EUR"}}, "total.amount"),
        ({"total": {"amount": 5000, "currency": "eur"}}, "total.currency"),
        ({"total": {"amount": 5000}}, "total.currency"),
        ({"currency": "EURO"}, "currency"),
        ({"surprise": True}, "surprise"),
        ({"lines": []}, "lines"),
        ({"payment": {"provider": "paypal", "charge_id": "x"}}, "payment.provider"),
        ({"delivered_at": "2026-01-01T10:00:00"}, "delivered_at"),
        ({"buyer_id": ""}, "buyer_id"),
    ],
)
def test_invalid_order_bodies_are_400_naming_the_field(
    client: TestClient[Any], auth: Tokens, world: World, change: dict[str, Any], field: str
) -> None:
    order_id = uid("ord")
    body = {**order_body(uid("buyer"), world.seller()), **change}
    response = put_order(client, auth, order_id, body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["status"] == 400
    assert any(error["field"] == field for error in problem["errors"]), problem
    # Nothing was written.
    assert client.get(f"/v1/orders/{order_id}", headers=auth("agent")).status_code == 404


def test_negative_line_quantity_and_unknown_line_field_are_400(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    seller_id = world.seller()
    bad_lines = [
        [{"line_id": "l1", "sku": "s", "title": "t", "quantity": -2, "unit_price": money(10)}],
        [{"line_id": "l1", "sku": "s", "title": "t", "quantity": 1, "unit_price": money(10), "discount": 1}],
    ]
    for lines in bad_lines:
        body = order_body(uid("buyer"), seller_id, lines=lines, total=money(-20 if lines[0]["quantity"] < 0 else 10))
        response = put_order(client, auth, uid("ord"), body)
        assert response.status_code == 400, response.text


def test_money_in_another_currency_than_the_order_is_rejected(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    body = order_body(uid("buyer"), world.seller(), commission=money(500, "USD"))
    response = put_order(client, auth, uid("ord"), body)
    assert response.status_code == 422
    assert response.json()["code"] == "money.currency_mismatch"
    assert response.json()["errors"][0]["field"] == "commission"


def test_duplicate_line_ids_are_rejected(client: TestClient[Any], auth: Tokens, world: World) -> None:
    line = {"line_id": "l1", "sku": "s", "title": "t", "quantity": 1, "unit_price": money(100)}
    body = order_body(uid("buyer"), world.seller(), lines=[line, line], total=money(200))
    response = put_order(client, auth, uid("ord"), body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "lines[1].line_id"


def test_commission_above_total_is_rejected(client: TestClient[Any], auth: Tokens, world: World) -> None:
    body = order_body(uid("buyer"), world.seller(), commission=money(6000))
    response = put_order(client, auth, uid("ord"), body)
    assert response.status_code == 422
    assert response.json()["code"] == "order.commission_exceeds_total"


def test_unknown_seller_is_rejected(client: TestClient[Any], auth: Tokens) -> None:
    response = put_order(client, auth, uid("ord"), order_body(uid("buyer"), uid("ghost-shop")))
    assert response.status_code == 422
    assert response.json()["code"] == "order.unknown_seller"


def test_total_can_be_corrected_before_any_refund_and_the_ledger_follows(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    assert put_order(client, auth, order_id, body).status_code == 201
    corrected = order_body(
        body["buyer_id"],
        body["seller_id"],
        unit=3000,
        payment=body["payment"],
    )
    response = put_order(client, auth, order_id, corrected)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == money(6000)
    assert response.json()["refundable"] == money(6000)
    # And a currency change is a reversal plus a new capture.
    in_usd = {
        **corrected,
        "currency": "USD",
        "total": money(6000, "USD"),
        "commission": money(600, "USD"),
        "lines": [{**corrected["lines"][0], "unit_price": money(3000, "USD")}],
    }
    response = put_order(client, auth, order_id, in_usd)
    assert response.status_code == 200, response.text
    assert response.json()["refundable"] == money(6000, "USD")


def test_buyer_and_seller_of_an_order_are_immutable(client: TestClient[Any], auth: Tokens, world: World) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    assert put_order(client, auth, order_id, body).status_code == 201
    response = put_order(client, auth, order_id, {**body, "buyer_id": uid("buyer")})
    assert response.status_code == 409
    assert response.json()["code"] == "order.immutable"


def test_delivery_sets_the_escrow_release_date(client: TestClient[Any], auth: Tokens, world: World) -> None:
    order = world.order(delivered_at="2026-11-01T12:00:00Z")
    assert order["delivered_at"] == "2026-11-01T12:00:00Z"
    assert order["escrow"] == {"status": "held", "release_at": "2026-11-15T12:00:00Z"}


def test_seller_upsert_and_read(client: TestClient[Any], auth: Tokens) -> None:
    seller_id = uid("shop")
    body = {
        "name": "Bouilloires & Co",
        "stripe_account_id": "acct_123",
        "settings": {"refund_budget": money(5000), "refund_on": "shipment"},
    }
    created = client.put(f"/v1/sellers/{seller_id}", json=body, headers=auth("admin"))
    assert created.status_code == 201, created.text
    assert created.json()["settings"] == {
        "refund_budget": money(5000),
        "refund_on": "shipment",
        "auto_accept_below": None,
    }
    updated = client.put(f"/v1/sellers/{seller_id}", json={"name": "Renamed"}, headers=auth.marketplace)
    assert updated.status_code == 200
    assert updated.json()["settings"]["refund_on"] == "receipt"
    assert client.get(f"/v1/sellers/{seller_id}", headers=auth("seller", seller_id=seller_id)).status_code == 200
    assert client.get(f"/v1/sellers/{seller_id}", headers=auth("seller", seller_id="other")).status_code == 404
    assert client.get(f"/v1/sellers/{seller_id}", headers=auth("buyer")).status_code == 404


@pytest.mark.parametrize("role", ["buyer", "agent", "arbitrator", "finance"])
def test_only_marketplace_and_admin_push_sellers(client: TestClient[Any], auth: Tokens, role: str) -> None:
    response = client.put(f"/v1/sellers/{uid('shop')}", json={"name": "x"}, headers=auth(role))
    assert response.status_code == 403


def test_invalid_seller_bodies(client: TestClient[Any], auth: Tokens) -> None:
    for body in (
        {},
        {"name": ""},
        {"name": "x", "settings": {"refund_on": "whenever"}},
        {"name": "x", "settings": {"refund_budget": {"amount": 1.5, "currency": "EUR"}}},
        {"name": "x", "color": "blue"},
    ):
        response = client.put(f"/v1/sellers/{uid('shop')}", json=body, headers=auth.marketplace)
        assert response.status_code == 400, body


def test_ids_in_paths_are_validated(client: TestClient[Any], auth: Tokens) -> None:
    response = client.put("/v1/sellers/" + "x" * 65, json={"name": "x"}, headers=auth.marketplace)
    assert response.status_code == 400
    response = client.put("/v1/sellers/bad%20id", json={"name": "x"}, headers=auth.marketplace)
    assert response.status_code == 400
