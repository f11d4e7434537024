"""Dispute timers run by the worker: second-scale deadlines, fired once even by two workers at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar.testing import TestClient

from app.db import create_engine
from tests.factories import Case, Tokens, World, make_settings, money

ONE_SECOND = {
    "SAV_SELLER_RESPONSE_SECONDS": "1",
    "SAV_BUYER_RESPONSE_SECONDS": "1",
    "SAV_RETURN_SECONDS": "1",
    "SAV_REOPEN_WINDOW_SECONDS": "1",
}


def test_timers_fire_once_with_two_workers(db_url: str, tmp_path: Any) -> None:
    from app.main import build_worker, create_app

    settings = make_settings(db_url, SAV_ATTACHMENTS_DIR=str(tmp_path), **ONE_SECOND)
    with TestClient(app=create_app(settings, configure_logs=False)) as client:
        auth = Tokens(settings)
        world = World(client, auth)
        silent_seller = Case(client, auth, world)
        silent_seller.open()
        silent_buyer = Case(client, auth, world)
        silent_buyer.open()
        silent_buyer.act(silent_buyer.seller, "propose", resolution={"type": "repair"})
        no_return = Case(client, auth, world, refund_budget=money(10_000))
        no_return.open()
        no_return.act(no_return.seller, "accept_claim", return_required=True)
        settled = Case(client, auth, world)
        settled.open(requested={"type": "replacement"})
        settled.act(settled.seller, "accept_claim")
        assert settled.dispute["status"] == "resolved"
        cases = [silent_seller, silent_buyer, no_return, settled]

        time.sleep(1.2)  # every deadline above is one second long

        async def two_workers() -> list[dict[str, int]]:
            engines = [create_engine(db_url), create_engine(db_url)]
            try:
                workers = [build_worker(settings, e) for e in engines]
                return list(await asyncio.gather(*(w.run_due() for w in workers)))
            finally:
                for engine in engines:
                    await engine.dispose()

        passes = asyncio.run(two_workers())
        assert sum(p.get("dispute-timers", 0) for p in passes) >= 4

        results = [(c.get(c.agent)["status"], c.get(c.agent)["outcome"]) for c in cases]
        assert results == [
            ("escalated", None),
            ("closed", "abandoned"),
            ("closed", "return_not_shipped"),
            ("closed", "resolved"),
        ]
        for case in cases:
            system = [e for e in case.events() if e["actor"]["role"] == "system"]
            assert len(system) == 1, system
            assert system[0]["actor"] == {"id": "system", "role": "system", "name": "System"}
        assert silent_seller.events()[-1]["action"] == "seller_timeout"
        # Escrow is frozen until the dispute closes; the escalated one keeps it frozen.
        frozen = client.get(f"/v1/orders/{silent_seller.order_id}", headers=silent_seller.buyer).json()
        assert frozen["escrow"]["status"] == "frozen"
        released = client.get(f"/v1/orders/{settled.order_id}", headers=settled.buyer).json()
        assert released["escrow"]["status"] == "held"
        # The escalated one is now in the queue with its SLA.
        queued = client.get("/v1/queue", params={"seller_id": silent_seller.shop}, headers=silent_seller.agent)
        assert [d["dispute_id"] for d in queued.json()["items"]] == [silent_seller.dispute["dispute_id"]]
