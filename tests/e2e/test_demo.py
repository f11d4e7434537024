"""`make demo` (python -m devtools.demo) for real: the local Stripe server, the seeded API, and the demo's
card refunds paid through the real Stripe adapter."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from app.db import ROOT
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
        wait_until(lambda: len(card()) == 2 and all(r["status"] == "succeeded" for r in card()), "paid refunds")
        assert all(str(r["provider_ref"]).startswith("re_") for r in card())
        kinds = {r["kind"]: r["status"] for r in refunds() if not r["dispute_id"]}
        assert kinds == {"full": "succeeded", "partial": "succeeded", "credit": "succeeded", "promo_code": "succeeded"}
        total = httpx.get(
            f"http://127.0.0.1:{stripe_port}/_control/refunds_total", params={"charge": "ch_demo_ord-1004"}
        ).json()
        assert (total["amount_refunded"], total["refunds"]) == (6_490, 1)  # the full refund of ord-1004, once
    finally:
        demo.terminate()
        demo.wait(20)
