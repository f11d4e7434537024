"""Stripe webhooks: the signature and its timestamp are verified by the official SDK, each event applies
once, a pending refund is settled by its event, and a refund made in the Stripe dashboard is imported."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.settings import Settings
from tests.factories import (
    STRIPE_WEBHOOK_SECRET,
    Case,
    Tokens,
    World,
    grant,
    ledger_is_balanced,
    make_settings,
    money,
    order_money,
    pay,
    refund_event,
    send,
)
from tests.fakes import FakeEscrow


@pytest.fixture(scope="module")
def hooked(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient[Any], Settings]]:
    from app.main import create_app

    settings = make_settings(
        db_url,
        SAV_STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        SAV_ATTACHMENTS_DIR=str(tmp_path_factory.mktemp("files")),
    )
    with TestClient(app=create_app(settings, configure_logs=False)) as client:
        yield client, settings


def test_bad_signatures_are_refused(hooked: tuple[TestClient[Any], Settings]) -> None:
    client, _ = hooked
    event = refund_event("refund.updated", {"id": "re_x", "amount": 1, "status": "succeeded", "charge": "ch_x"})
    assert send(client, event, secret="whsec_wrong").status_code == 400
    assert send(client, event, at=int(time.time()) - 3600).status_code == 400  # replayed an hour later
    unsigned = client.post(
        "/v1/webhooks/stripe", content=json.dumps(event), headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 400


def test_an_event_settles_a_pending_refund_once(
    hooked: tuple[TestClient[Any], Settings], auth: Tokens, world: World
) -> None:
    client, settings = hooked
    case = Case(client, auth, world)
    escrow = FakeEscrow()
    escrow.status = "pending"  # the provider takes its time (bank transfers do)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(900), funded_by="operator"
    )
    pay(settings, escrow)
    provider_ref = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()["provider_ref"]
    assert provider_ref

    event = refund_event(
        "refund.updated",
        {"id": provider_ref, "amount": 900, "status": "succeeded", "metadata": {"refund_id": refund["refund_id"]}},
    )
    first = send(client, event)
    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert send(client, event).json()["outcome"] == "duplicate"
    assert client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()["status"] == "succeeded"
    assert order_money(client, case) == (900, 4_100)


def test_a_failed_event_reverses_and_a_dashboard_refund_is_imported(
    hooked: tuple[TestClient[Any], Settings], auth: Tokens, world: World
) -> None:
    client, settings = hooked
    case = Case(client, auth, world)
    escrow = FakeEscrow()
    escrow.status = "pending"
    refund = grant(client, case.arbitrator, order_id=case.order_id, kind="full", funded_by="operator")
    pay(settings, escrow)
    provider_ref = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()["provider_ref"]
    failed = refund_event(
        "refund.failed",
        {"id": provider_ref, "amount": 5_000, "status": "failed", "failure_reason": "lost_or_stolen_card"},
    )
    assert send(client, failed).json()["outcome"] == "applied"
    after = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert (after["status"], after["failure_reason"]) == ("failed", "lost_or_stolen_card")
    assert order_money(client, case) == (0, 5_000)

    charge_id = case.order["payment"]["charge_id"]
    dashboard = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "refunds": {
                    "object": "list",
                    "data": [
                        {"id": "re_dash_1", "amount": 700, "currency": "eur", "status": "succeeded", "metadata": {}}
                    ],
                },
            }
        },
    }
    assert send(client, dashboard).json()["outcome"] == "applied"
    imported = client.get("/v1/refunds", params={"order_id": case.order_id, "status": "succeeded"}, headers=case.agent)
    [row] = imported.json()["items"]
    assert (row["provider_ref"], row["amount"], row["funded_by"]) == ("re_dash_1", money(700), "operator")
    assert order_money(client, case) == (700, 4_300)
    unknown = {**dashboard, "id": f"evt_{uuid.uuid4().hex[:24]}"}
    elsewhere = {"id": "re_elsewhere", "amount": 700, "currency": "eur", "status": "succeeded", "metadata": {}}
    unknown["data"] = {"object": {"id": "ch_not_ours", "object": "charge", "refunds": {"data": [elsewhere]}}}
    assert send(client, unknown).json()["outcome"] == "ignored"


def test_a_refund_that_fails_after_it_succeeded_gives_the_money_back(
    hooked: tuple[TestClient[Any], Settings], auth: Tokens, world: World
) -> None:
    client, settings = hooked
    case = Case(client, auth, world)
    escrow = FakeEscrow()
    refund = grant(
        client,
        case.arbitrator,
        order_id=case.order_id,
        kind="partial",
        amount=money(2_000),
        funded_by="split",
        seller_share=money(1_500),
    )
    pay(settings, escrow)
    paid = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert paid["status"] == "succeeded"
    assert order_money(client, case) == (2_000, 3_000)

    later = refund_event(
        "refund.failed",
        {"id": paid["provider_ref"], "amount": 2_000, "status": "failed", "failure_reason": "expired_or_canceled_card"},
    )
    assert send(client, later).json()["outcome"] == "applied"
    assert send(client, {**later}).json()["outcome"] == "duplicate"
    after = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert after["status"] == "failed"
    assert after["failure_reason"] == "failed after it succeeded: expired_or_canceled_card"
    assert order_money(client, case) == (0, 5_000)  # refundable again, shop and operator parts returned
    assert ledger_is_balanced(settings)
    again = refund_event("refund.failed", {"id": paid["provider_ref"], "amount": 2_000, "status": "failed"})
    assert send(client, again).json()["outcome"] == "ignored"  # another event id, same news: once only
