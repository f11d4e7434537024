"""A charge belongs to one order: provider webhooks find the order by its charge, so two orders sharing one
would send an imported refund to whichever the database returns first. 409 ``order.charge_in_use``,
checked first and enforced by a unique index when two pushes race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import TestClient

from app.orders import service
from tests.factories import Tokens, World, order_body, uid


def put_order(client: TestClient[Any], auth: Tokens, order_id: str, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/orders/{order_id}", json=body, headers=auth.marketplace)


def with_charge(body: dict[str, Any], charge_id: str) -> dict[str, Any]:
    return {**body, "payment": {"provider": "stripe", "charge_id": charge_id}}


def test_a_second_order_with_the_same_charge_is_409_and_nothing_is_written(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    first = world.order()
    charge_id = first["payment"]["charge_id"]
    second_id = uid("ord")
    answer = put_order(client, auth, second_id, with_charge(order_body(uid("buyer"), world.seller()), charge_id))
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "order.charge_in_use"
    assert answer.json()["errors"][0]["field"] == "payment.charge_id"
    assert client.get(f"/v1/orders/{second_id}", headers=auth("agent")).status_code == 404

    # Moving an existing order onto that charge is refused the same way, and the order stays as it was.
    third = world.order()
    moved = {**order_body(third["buyer_id"], third["seller_id"]), "payment": first["payment"]}
    answer = put_order(client, auth, third["order_id"], moved)
    assert (answer.status_code, answer.json()["code"]) == (409, "order.charge_in_use")
    assert client.get(f"/v1/orders/{third['order_id']}", headers=auth("agent")).json() == third


def test_the_same_order_pushed_again_with_its_charge_is_200(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    assert put_order(client, auth, order_id, body).status_code == 201
    assert put_order(client, auth, order_id, body).status_code == 200
    changed = {**body, "delivered_at": "2026-11-20T10:00:00Z"}
    answer = put_order(client, auth, order_id, changed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["payment"]["charge_id"] == body["payment"]["charge_id"]


def test_when_two_pushes_race_for_a_charge_the_unique_index_answers_409(
    client: TestClient[Any], auth: Tokens, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs before the write; a push that passed it while another took the charge meanwhile is
    stopped by the unique index, and that is a 409 too, not a 500. Simulated by blinding the check once."""
    first = world.order()
    charge_id = first["payment"]["charge_id"]
    check = service._require_charge_free
    blinded: list[str] = []

    async def blind_once(session: Any, order_id: str, charge: str) -> None:
        if order_id not in blinded:
            blinded.append(order_id)  # the first check of each push sees no other order
            return
        await check(session, order_id, charge)

    monkeypatch.setattr(service, "_require_charge_free", blind_once)
    second_id = uid("ord")
    answer = put_order(client, auth, second_id, with_charge(order_body(uid("buyer"), world.seller()), charge_id))
    assert (answer.status_code, answer.json()["code"]) == (409, "order.charge_in_use"), answer.text
    assert client.get(f"/v1/orders/{second_id}", headers=auth("agent")).status_code == 404

    third = world.order()
    answer = put_order(
        client,
        auth,
        third["order_id"],
        {**order_body(third["buyer_id"], third["seller_id"]), "payment": first["payment"]},
    )
    assert (answer.status_code, answer.json()["code"]) == (409, "order.charge_in_use"), answer.text
    assert client.get(f"/v1/orders/{third['order_id']}", headers=auth("agent")).json() == third


def test_concurrent_pushes_give_a_charge_to_one_order(client: TestClient[Any], auth: Tokens, world: World) -> None:
    charge_id, seller_id = f"ch_{uid('race')}", world.seller()
    orders = [(uid("ord"), with_charge(order_body(uid("buyer"), seller_id), charge_id)) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda o: put_order(client, auth, *o), orders))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"order.charge_in_use"}
    found = [client.get(f"/v1/orders/{order_id}", headers=auth("agent")).status_code for order_id, _ in orders]
    assert sorted(found) == [200, 404, 404, 404, 404, 404]


def test_concurrent_pushes_of_one_new_order_create_it_once(client: TestClient[Any], auth: Tokens, world: World) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: put_order(client, auth, order_id, body), range(6)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 200, 201], [a.text for a in answers]
