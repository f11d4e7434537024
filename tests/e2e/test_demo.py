"""`make demo` (python -m devtools.demo) for real: the local Stripe server, the seeded API, the demo's
card refunds paid through the real Stripe adapter, and money leaving escrow (payouts, a transfer reversal,
a refused reversal recorded as the shop's debt and netted from its next release)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db import ROOT
from devtools.demo import API_KEY
from tests.e2e.helpers import free_port, wait_until

pytestmark = pytest.mark.slow


def test_make_demo_pays_its_card_refunds_through_the_local_stripe_server(tmp_path: Path) -> None:
    port, stripe_port = free_port(), free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("SAV_") or key == "SAV_TEST_DATABASE_URL"
    }
    env |= {"SAV_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}", "SAV_ATTACHMENTS_DIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--port", str(port), "--stripe-port", str(stripe_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert demo.stdout is not None
    threading.Thread(target=lambda: output.extend(demo.stdout or []), daemon=True).start()
    try:
        token = wait_until(
            lambda: next((line.split("=", 1)[1].strip() for line in output if "TOKEN_ARBITRATOR" in line), None),
            "the demo's tokens",
        )
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})

        def refunds() -> list[dict[str, object]]:
            try:
                return api.get("/v1/refunds", params={"limit": 50}).json()["items"]  # type: ignore[no-any-return]
            except httpx.HTTPError:
                return []

        card = lambda: [r for r in refunds() if r["kind"] in ("full", "partial") and not r["dispute_id"]]  # noqa: E731
        # The two seeded card refunds, and the two refunds the shops granted after their payouts.
        wait_until(lambda: len(card()) == 4 and all(r["status"] == "succeeded" for r in card()), "paid refunds")
        assert all(str(r["provider_ref"]).startswith("re_") for r in card())
        assert sorted(r["order_id"] for r in card()) == ["ord-1001", "ord-1004", "ord-3001", "ord-3002"]
        kinds = {r["kind"]: r["status"] for r in refunds() if not r["dispute_id"]}
        assert kinds == {"full": "succeeded", "partial": "succeeded", "credit": "succeeded", "promo_code": "succeeded"}
        total = httpx.get(
            f"http://127.0.0.1:{stripe_port}/_control/refunds_total", params={"charge": "ch_demo_ord_1004"}
        ).json()
        assert (total["amount_refunded"], total["refunds"]) == (6_490, 1)  # the full refund of ord-1004, once
        assert "payouts: 4 paid, 1 reversal, 1 debt netted" in "".join(output)
        check_money_out_of_escrow(output, port, stripe_port)
        # The slow refund, settled as the bank would (as the demo prints): its webhook resolves the dispute.
        stripe_api = httpx.Client(base_url=f"http://127.0.0.1:{stripe_port}", auth=(API_KEY, ""))
        slow = stripe_api.get("/v1/refunds", params={"charge": "ch_demo_ord_2007"}).json()["data"]
        assert [r["status"] for r in slow] == ["pending"]
        stripe_api.post(f"/_control/refunds/{slow[0]['id']}/settle", data={"status": "succeeded"}).raise_for_status()

        def dispute_of_ord_2007() -> str:
            items = api.get("/v1/disputes", params={"limit": 50}).json()["items"]
            return str(next(d["status"] for d in items if d["order_id"] == "ord-2007"))

        wait_until(lambda: dispute_of_ord_2007() == "resolved", "the slow refund's dispute resolved")
        # Stripe's webhook about it was read (applied, or ignored if the worker asked first), none rejected.
        finance = next(line.split("=", 1)[1].strip() for line in output if "TOKEN_FINANCE_FATOU" in line)

        def events() -> list[dict[str, Any]]:
            found = httpx.get(
                f"http://127.0.0.1:{port}/v1/provider-events",
                params={"limit": 50},
                headers={"Authorization": f"Bearer {finance}"},
            )
            return found.json()["items"]  # type: ignore[no-any-return]

        wait_until(
            lambda: any(e["type"] == "refund.updated" and e["provider_refund_id"] == slow[0]["id"] for e in events()),
            "the slow refund's webhook",
        )
        assert [(e["type"], e["reason"]) for e in events() if e["status"] == "rejected"] == []
    finally:
        demo.terminate()
        demo.wait(20)


def check_money_out_of_escrow(output: list[str], port: int, stripe_port: int) -> None:
    """What finance sees through the API, and the local Stripe server's transfers and reversals behind it."""
    token = next(line.split("=", 1)[1].strip() for line in output if "TOKEN_FINANCE_FATOU" in line)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
    stripe_api = httpx.Client(base_url=f"http://127.0.0.1:{stripe_port}", auth=(API_KEY, ""))
    payouts = {p["order_id"]: p for p in api.get("/v1/payouts", params={"limit": 50}).json()["items"]}
    assert {order: p["status"] for order, p in payouts.items()} == dict.fromkeys(
        ["ord-1004", "ord-3001", "ord-3002", "ord-3003"], "paid"
    )
    accounts = {"shop-kettles": "acct_demo_kettles", "shop-bikes": "acct_demo_bikes"}
    for payout in payouts.values():
        transfer = stripe_api.get(f"/v1/transfers/{payout['provider_ref']}").json()
        assert (transfer["amount"], transfer["destination"], transfer["transfer_group"]) == (
            payout["amount"]["amount"],
            accounts[payout["seller_id"]],
            payout["order_id"],
        )
        assert transfer["amount_reversed"] == payout["reversed"]["amount"]
    # ord-3001: the shop's refund after payout taken back from its transfer (1 500), once.
    reversals = stripe_api.get(f"/v1/transfers/{payouts['ord-3001']['provider_ref']}/reversals").json()["data"]
    assert [(r["id"][:4], r["amount"]) for r in reversals] == [("trr_", 1_500)]
    # ord-3002: refused (the shop's account emptied), so a debt of 2 000, netted from ord-3003's release.
    assert payouts["ord-3002"]["reversed"]["amount"] == 0
    assert payouts["ord-3003"]["debt_netted"] == {"amount": 2_000, "currency": "EUR"}
    assert payouts["ord-3003"]["amount"]["amount"] == 5_490 - 549 - 2_000
    balances = {
        shop: api.get(f"/v1/sellers/{shop}/balance").json()["balances"][0] for shop in ("shop-kettles", "shop-bikes")
    }
    assert balances["shop-kettles"]["reversed"]["amount"] == 1_500
    assert balances["shop-bikes"]["debt"]["amount"] == 0  # recorded, then netted
    assert balances["shop-bikes"]["paid_out"]["amount"] == sum(
        p["amount"]["amount"] for p in payouts.values() if p["seller_id"] == "shop-bikes"
    )
