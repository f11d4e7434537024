"""``refund.updated`` on the WebSocket: at the grant and at each status change, to whoever may read the
refund, with the refund as ``GET /v1/refunds/{id}`` shows it to that reader (a shop never sees a promo
code) — a real uvicorn process, real `websockets` clients, signed provider webhooks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from tests.e2e.helpers import Service, drain, open_socket, put
from tests.factories import Tokens, money, order_body, uid

pytestmark = pytest.mark.slow

SECRET = "whsec_e2e_0123456789abcdef"
READERS = ("buyer", "seller", "agent", "arbitrator", "finance", "marketplace")
STRANGERS = ("other_buyer", "other_seller")


@pytest.fixture(scope="module")
def hooked(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(db_url, tmp_path_factory.mktemp("refund-events"), SAV_STRIPE_WEBHOOK_SECRET=SECRET)
    yield svc
    svc.stop()


@pytest.fixture
def people(hooked: Service, auth: Tokens) -> dict[str, Any]:
    shop, other_shop, buyer, order = uid("shop"), uid("shop"), uid("buyer"), uid("ord")
    body = order_body(buyer, shop)
    with hooked.client() as http:
        for s in (shop, other_shop):
            put(http, f"/v1/sellers/{s}", {"name": s}, auth.marketplace)
        put(http, f"/v1/orders/{order}", body, auth.marketplace)
    return {
        "buyer": auth("buyer", buyer),
        "other_buyer": auth("buyer"),
        "seller": auth("seller", uid("m"), seller_id=shop),
        "other_seller": auth("seller", uid("m"), seller_id=other_shop),
        "agent": auth("agent"),
        "arbitrator": auth("arbitrator"),
        "finance": auth("finance"),
        "marketplace": auth.marketplace,
        "order": order,
        "charge": body["payment"]["charge_id"],
    }


def grant(http: httpx.Client, who: dict[str, str], **body: Any) -> dict[str, Any]:
    response = http.post(
        "/v1/refunds",
        json={"reason": "e2e", "funded_by": "operator", **body},
        headers={**who, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def provider_event(http: httpx.Client, refund: dict[str, Any], charge: str, status: str) -> None:
    """A signed Stripe ``refund.updated`` about one of our refunds (our id in its metadata)."""
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "refund.updated",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": f"re_{refund['refund_id'][-16:]}",
                "object": "refund",
                "amount": refund["amount"]["amount"],
                "currency": refund["amount"]["currency"].lower(),
                "charge": charge,
                "status": status,
                "metadata": {"refund_id": refund["refund_id"]},
            }
        },
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, SECRET, timestamp=int(time.time()))
    response = http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert (response.status_code, response.json().get("outcome")) == (200, "applied"), response.text


def refund_events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["data"] for f in frames if f.get("type") == "refund.updated"]


async def test_refund_updates_reach_those_who_may_read_the_refund_as_they_would_read_it(
    hooked: Service, people: dict[str, Any]
) -> None:
    p = people
    sockets = {name: await open_socket(hooked, p[name]) for name in (*READERS, *STRANGERS)}
    http = hooked.client()
    try:
        promo = await asyncio.to_thread(
            grant, http, p["arbitrator"], order_id=p["order"], kind="promo_code", amount=money(500)
        )
        assert promo["promo_code"]
        partial = await asyncio.to_thread(
            grant, http, p["arbitrator"], order_id=p["order"], kind="partial", amount=money(900)
        )
        assert partial["status"] == "pending"
        await asyncio.to_thread(provider_event, http, partial, p["charge"], "succeeded")  # settled by the provider
        await asyncio.to_thread(provider_event, http, partial, p["charge"], "failed")  # and failed after that

        expected = [
            (promo["refund_id"], "succeeded"),
            (partial["refund_id"], "pending"),
            (partial["refund_id"], "succeeded"),
            (partial["refund_id"], "failed"),
        ]
        for name in READERS:
            # Staff, finance and the marketplace read every order's refunds: other tests' refunds (paid by
            # their workers meanwhile) may arrive too; this test's are those of its order, in order.
            received = [r for r in refund_events(await drain(sockets[name])) if r["order_id"] == p["order"]]
            assert [(r["refund_id"], r["status"]) for r in received] == expected, name
            for refund in (promo, partial):
                now = http.get(f"/v1/refunds/{refund['refund_id']}", headers=p[name])
                assert now.status_code == 200
                latest = [r for r in received if r["refund_id"] == refund["refund_id"]][-1]
                assert latest == now.json(), name
            codes = {r["promo_code"] for r in received if r["refund_id"] == promo["refund_id"]}
            assert codes == ({None} if name == "seller" else {promo["promo_code"]}), name
        for name in STRANGERS:
            assert refund_events(await drain(sockets[name])) == [], name
    finally:
        http.close()
        for ws in sockets.values():
            await ws.close()


async def test_a_shop_resuming_gets_refund_updates_without_the_promo_code(
    hooked: Service, people: dict[str, Any]
) -> None:
    p = people
    with hooked.client() as http:
        promo = grant(http, p["arbitrator"], order_id=p["order"], kind="promo_code", amount=money(300))
    for name, code in (("seller", None), ("buyer", promo["promo_code"])):
        ws = await open_socket(hooked, p[name], resume=0)
        try:
            received = [r for r in refund_events(await drain(ws)) if r["refund_id"] == promo["refund_id"]]
        finally:
            await ws.close()
        assert [(r["status"], r["promo_code"]) for r in received] == [("succeeded", code)], name
