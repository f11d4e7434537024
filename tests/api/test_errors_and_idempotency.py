"""Problem documents for framework errors, and the Idempotency-Key mechanism."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from litestar.testing import TestClient

from tests.factories import Tokens, World, order_body, uid


def test_unknown_route_is_a_problem_document(client: TestClient[Any], auth: Tokens) -> None:
    response = client.get("/v1/nothing-here", headers=auth("agent"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert set(response.json()) >= {"type", "title", "status", "detail", "code"}


def test_wrong_method_is_405_problem(client: TestClient[Any], auth: Tokens) -> None:
    response = client.delete("/v1/orders/x", headers=auth.marketplace)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_malformed_json_is_400(client: TestClient[Any], auth: Tokens) -> None:
    response = client.put(
        "/v1/sellers/s-x",
        content=b"{not json",
        headers={**auth.marketplace, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_requests_carry_a_request_id(client: TestClient[Any]) -> None:
    assert len(client.get("/health").headers["x-request-id"]) >= 16
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"


def test_repeat_with_same_key_replays_the_first_response(client: TestClient[Any], auth: Tokens, world: World) -> None:
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    headers = {**auth.marketplace, "Idempotency-Key": uid("key")}
    first = client.put(f"/v1/orders/{order_id}", json=body, headers=headers)
    second = client.put(f"/v1/orders/{order_id}", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"


def test_same_key_with_another_body_is_422(client: TestClient[Any], auth: Tokens, world: World) -> None:
    seller_id = world.seller()
    headers = {**auth.marketplace, "Idempotency-Key": uid("key")}
    first = client.put(f"/v1/orders/{uid('ord')}", json=order_body(uid("b"), seller_id), headers=headers)
    assert first.status_code == 201
    order_id = uid("ord")
    reused = client.put(f"/v1/orders/{order_id}", json=order_body(uid("b"), seller_id), headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency.key_reused"
    assert client.get(f"/v1/orders/{order_id}", headers=auth("agent")).status_code == 404


def test_keys_are_scoped_per_caller(client: TestClient[Any], auth: Tokens) -> None:
    key = uid("key")
    for caller in (auth("admin", "admin-1"), auth("admin", "admin-2")):
        response = client.put(
            f"/v1/sellers/{uid('shop')}", json={"name": "x"}, headers={**caller, "Idempotency-Key": key}
        )
        assert response.status_code == 201


def test_a_failed_request_does_not_burn_its_key(client: TestClient[Any], auth: Tokens, world: World) -> None:
    order_id, seller_id = uid("ord"), world.seller()
    headers = {**auth.marketplace, "Idempotency-Key": uid("key")}
    bad = order_body(uid("b"), seller_id, commission={"amount": 999_999, "currency": "EUR"})
    assert client.put(f"/v1/orders/{order_id}", json=bad, headers=headers).status_code == 422
    good = order_body(uid("b"), seller_id)
    assert client.put(f"/v1/orders/{order_id}", json=good, headers=headers).status_code == 201


def test_key_order_in_json_does_not_matter(client: TestClient[Any], auth: Tokens, world: World) -> None:
    import json

    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    headers = {**auth.marketplace, "Idempotency-Key": uid("key"), "Content-Type": "application/json"}
    first = client.put(f"/v1/orders/{order_id}", content=json.dumps(body), headers=headers)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    second = client.put(f"/v1/orders/{order_id}", content=reordered, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)


def test_oversized_key_is_400(client: TestClient[Any], auth: Tokens) -> None:
    response = client.put(
        f"/v1/sellers/{uid('shop')}", json={"name": "x"}, headers={**auth.marketplace, "Idempotency-Key": "k" * 256}
    )
    assert response.status_code == 400


def test_concurrent_requests_with_one_key_execute_once(client: TestClient[Any], auth: Tokens, world: World) -> None:
    """Ten identical requests at once: one creates (201), the others replay that 201 — none sees a 200
    (which would mean the upsert ran a second time) and none fails."""
    order_id, body = uid("ord"), order_body(uid("buyer"), world.seller())
    headers = {**auth.marketplace, "Idempotency-Key": uid("key")}

    def send(_: int) -> tuple[int, Any]:
        response = client.put(f"/v1/orders/{order_id}", json=body, headers=headers)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(send, range(10)))
    assert {status for status, _ in results} == {201}, results
    assert len({str(payload) for _, payload in results}) == 1
