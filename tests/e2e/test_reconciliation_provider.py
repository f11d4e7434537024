"""Reconciliation against the local Stripe-compatible server, with real processes: money moved through the
API and the embedded worker (a charge, a release to the shop, a refund after it recovered from the shop's
transfer with a reversal, a refund the bank failed), then a reconciliation of the period pulled from the
provider's balance transactions: everything matches, the fees are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.db import utcnow
from tests.e2e.helpers import API_KEY, Service, StripeServerProcess, put, wait_until
from tests.factories import Tokens, money, uid

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

WEBHOOK_SECRET = "whsec_e2e_recon_0123456789abcdef"


@pytest.fixture(scope="module")
def service(
    db_url: str, stripe_server: StripeServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    svc = Service(
        db_url,
        tmp_path_factory.mktemp("reconciliation"),
        SAV_STRIPE_API_KEY=API_KEY,
        SAV_STRIPE_API_BASE=stripe_server.url,
        SAV_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SAV_RUN_WORKER="true",
        SAV_WORKER_POLL_SECONDS="0.2",
        SAV_ESCROW_HOLD_SECONDS="1",
    )
    yield svc
    svc.stop()


def test_a_period_of_real_money_movements_reconciles_with_everything_matched(
    service: Service, stripe_server: StripeServerProcess, auth: Tokens
) -> None:
    stripe_server.ctl("POST", "reset")
    stripe_server.ctl("POST", "webhook", url=f"{service.url}/v1/webhooks/stripe", secret=WEBHOOK_SECRET)
    # Whole seconds: the provider's ``created`` filter is in seconds.
    start = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    http = service.client()
    arbitrator, finance = auth("arbitrator", uid("arb")), auth("finance", uid("fin"))
    stripe_server.ctl("POST", "accounts", id="acct_recon_e2e")
    shop = uid("shop")
    put(http, f"/v1/sellers/{shop}", {"name": "Recon shop", "stripe_account_id": "acct_recon_e2e"}, auth.marketplace)

    def paid_order(total: int) -> tuple[str, str]:
        charge = stripe_server.client().v1.charges.create(params={"amount": total, "currency": "eur"})
        order_id = uid("ord")
        body = {
            "buyer_id": uid("buyer"),
            "seller_id": shop,
            "currency": "EUR",
            "total": money(total),
            "commission": money(total // 10),
            "lines": [{"line_id": "l1", "sku": "K-1", "title": "Kettle", "quantity": 1, "unit_price": money(total)}],
            "payment": {"provider": "stripe", "charge_id": charge.id},
            "delivered_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        }
        put(http, f"/v1/orders/{order_id}", body, auth.marketplace)
        return order_id, charge.id

    def refund(order_id: str, amount: int, funded_by: str) -> dict[str, Any]:
        body = {"order_id": order_id, "kind": "partial", "amount": money(amount), "funded_by": funded_by}
        headers = {**arbitrator, "Idempotency-Key": uid("key")}
        answer = http.post("/v1/refunds", json={"reason": "e2e", **body}, headers=headers)
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def payout(order_id: str) -> dict[str, Any]:
        items = http.get("/v1/payouts", params={"order_id": order_id}, headers=finance).json()["items"]
        return items[0] if items else {}

    released, _ = paid_order(8_000)
    failing, failing_charge = paid_order(5_000)
    wait_until(lambda: payout(released).get("status") == "paid", "the release to be transferred")
    # After release: the buyer is refunded by the provider, then the shop's part is taken back (trr_).
    refund(released, 1_500, "seller")
    wait_until(lambda: payout(released).get("reversed", {}).get("amount") == 1_500, "the transfer reversal")
    # The bank fails a refund: the provider lists the refund and its refund_failure.
    stripe_server.ctl("POST", "next_refund_pending", charge=failing_charge)
    failed = refund(failing, 1_000, "operator")

    def status_of(refund_id: str) -> str:
        return str(http.get(f"/v1/refunds/{refund_id}", headers=arbitrator).json()["status"])

    at_provider = wait_until(
        lambda: stripe_server.api("GET", "/v1/refunds", params={"charge": failing_charge}).json()["data"],
        "the refund to reach the provider",
    )
    stripe_server.ctl("POST", f"refunds/{at_provider[0]['id']}/settle", status="failed")
    wait_until(lambda: status_of(failed["refund_id"]) == "failed", "the failed refund's webhook")
    wait_until(lambda: payout(failing).get("status") == "paid", "the second release")
    time.sleep(1.1)  # the period ends after the last movement's second
    end = utcnow().replace(microsecond=0) + timedelta(seconds=1)

    started = http.post("/v1/reconciliations", json={"from": start.isoformat(), "to": end.isoformat()}, headers=finance)
    assert started.status_code == 202, started.text
    rec_id = started.json()["reconciliation_id"]
    rec = wait_until(
        lambda: (r := http.get(f"/v1/reconciliations/{rec_id}", headers=finance).json())["status"] != "running" and r,
        "the reconciliation to finish",
    )
    items = http.get(f"/v1/reconciliations/{rec_id}/items", params={"limit": 200}, headers=finance).json()["items"]
    assert rec["status"] == "done", rec
    assert {(item["type"], item["status"]) for item in items} == {
        ("charge", "matched"),
        ("transfer", "matched"),
        ("refund", "matched"),
        ("transfer_reversal", "matched"),
        ("refund_failure", "matched"),
    }, items
    assert rec["counts"]["matched"] == len(items) == 8  # 2 charges, 2 transfers, 2 refunds, 1 reversal, 1 failure
    assert rec["counts"]["amount_mismatch"] == rec["counts"]["missing_in_ledger"] == 0
    assert rec["counts"]["missing_in_provider"] == 0
    assert rec["totals"][0]["gross_drift"] == 0
    assert rec["totals"][0]["provider_net"] == rec["totals"][0]["ledger_net"]
