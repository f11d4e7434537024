"""Refunds end to end through the real Stripe adapter over HTTP, against the local Stripe-compatible
server (devtools/stripe_server), with its faults: the provider's total must equal our ledger's and no
refund may be paid twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine, utcnow
from app.payouts import settlement
from app.payouts.stripe_escrow import StripeEscrow
from app.settings import Settings
from tests.e2e.helpers import API_KEY, StripeServerProcess
from tests.factories import Tokens, World, make_settings, money, uid

pytestmark = pytest.mark.slow  # the local Stripe-compatible server runs as a real process


@pytest.fixture
def stripe_app(
    db_url: str,
    stripe_server: StripeServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient[Any], Settings, StripeServerProcess]]:
    from app.main import create_app

    stripe_server.ctl("POST", "reset")
    settings = make_settings(
        db_url,
        SAV_STRIPE_API_KEY=API_KEY,
        SAV_STRIPE_API_BASE=stripe_server.url,
        SAV_ATTACHMENTS_DIR=str(tmp_path_factory.mktemp("files")),
    )
    with TestClient(app=create_app(settings, configure_logs=False)) as client:
        yield client, settings, stripe_server


def paid_order(client: TestClient[Any], auth: Tokens, server: StripeServerProcess, total: int) -> tuple[str, str]:
    """A charge at the provider and the order the marketplace pushes for it."""
    charge = server.client().v1.charges.create(params={"amount": total, "currency": "eur", "transfer_group": uid("o")})
    world = World(client, auth)
    order = world.order(
        uid("buyer"), world.seller(), unit=total, qty=1, payment={"provider": "stripe", "charge_id": charge.id}
    )
    return order["order_id"], charge.id


def pay(settings: Settings, *, later: timedelta = timedelta(0)) -> int:
    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            gateway = StripeEscrow(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            return await settlement.pay_due(sessions, gateway=gateway, now=utcnow() + later)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def grant(client: TestClient[Any], who: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/refunds",
        json={"reason": "e2e", "funded_by": "operator", **body},
        headers={**who, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_refunds_reach_stripe_once_even_when_the_connection_drops(
    stripe_app: tuple[TestClient[Any], Settings, StripeServerProcess], auth: Tokens
) -> None:
    client, settings, server = stripe_app
    arbitrator = auth("arbitrator", uid("arb"))
    order_id, charge_id = paid_order(client, auth, server, 5_000)
    granted = [
        grant(client, arbitrator, order_id=order_id, kind="partial", amount=money(1_000)),
        grant(client, arbitrator, order_id=order_id, kind="partial", amount=money(1_500)),
        grant(client, arbitrator, order_id=order_id, kind="full"),
    ]
    # Stripe applies the first refund and the answer is lost: the retry with the same key replays it.
    server.ctl("POST", "faults", path="/v1/refunds", mode="drop_after_apply", count=1)
    pay(settings)
    statuses = [client.get(f"/v1/refunds/{g['refund_id']}", headers=arbitrator).json() for g in granted]
    assert [s["status"] for s in statuses] == ["succeeded"] * 3
    assert all(s["provider_ref"].startswith("re_") for s in statuses)
    provider = server.ctl("GET", "refunds_total", charge=charge_id)
    assert (provider["amount_refunded"], provider["refunds"]) == (5_000, 3)
    order = client.get(f"/v1/orders/{order_id}", headers=arbitrator).json()
    assert (order["refunded"], order["refundable"]) == (money(5_000), money(0))  # our ledger = Stripe's
    # A pass an hour later finds none of ours due again (other tests' refunds in the database may be).
    pay(settings, later=timedelta(hours=1))
    listed = client.get("/v1/refunds", params={"order_id": order_id}, headers=arbitrator).json()["items"]
    assert sorted((r["refund_id"], r["status"]) for r in listed) == sorted(
        (g["refund_id"], "succeeded") for g in granted
    )
    assert server.ctl("GET", "refunds_total", charge=charge_id)["refunds"] == 3


def test_provider_errors_are_retried_with_the_same_key_and_refusals_reversed(
    stripe_app: tuple[TestClient[Any], Settings, StripeServerProcess], auth: Tokens
) -> None:
    client, settings, server = stripe_app
    arbitrator = auth("arbitrator", uid("arb"))
    order_id, charge_id = paid_order(client, auth, server, 3_000)
    first = grant(client, arbitrator, order_id=order_id, kind="partial", amount=money(1_200))
    # Stripe answers 500 before applying, more times than the SDK retries: the worker backs off.
    server.ctl("POST", "faults", path="/v1/refunds", mode="error_500", count=2)
    pay(settings)
    assert client.get(f"/v1/refunds/{first['refund_id']}", headers=arbitrator).json()["status"] == "pending"
    assert server.ctl("GET", "refunds_total", charge=charge_id)["refunds"] == 0
    pay(settings, later=timedelta(minutes=1))
    assert client.get(f"/v1/refunds/{first['refund_id']}", headers=arbitrator).json()["status"] == "succeeded"

    # Someone refunds the rest in the Stripe dashboard; our refund of it is then refused by Stripe.
    server.ctl("POST", "dashboard_refund", charge=charge_id)
    second = grant(client, arbitrator, order_id=order_id, kind="partial", amount=money(1_000))
    pay(settings, later=timedelta(minutes=2))
    refused = client.get(f"/v1/refunds/{second['refund_id']}", headers=arbitrator).json()
    assert refused["status"] == "failed"
    assert refused["failure_reason"].startswith("charge_already_refunded")
    provider = server.ctl("GET", "refunds_total", charge=charge_id)
    assert provider["refunds"] == 2  # ours once, the dashboard's once: never ours twice
