"""The Stripe adapter keeps at most ``max_in_flight`` requests open at once, however many a worker pass
asks for together (app/payouts/stripe_escrow.py, MAX_IN_FLIGHT): every one is still made and answered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from app.payouts.stripe_escrow import MAX_IN_FLIGHT, StripeEscrow


class CountingTransfers:
    """Stands in for the SDK's transfer service: answers after a pause and counts the calls open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.keys: list[str] = []

    async def create_async(self, *, params: dict[str, Any], options: dict[str, Any]) -> Any:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(0.01)
            self.keys.append(options["idempotency_key"])
            return SimpleNamespace(
                id=f"tr_{params['transfer_group']}",
                amount=params["amount"],
                amount_reversed=0,
                currency=params["currency"],
                destination=params["destination"],
                transfer_group=params["transfer_group"],
            )
        finally:
            self.open -= 1


async def _pass(escrow: StripeEscrow, n: int) -> list[str]:
    made = await asyncio.gather(
        *(
            escrow.transfer(
                amount=100 + i,
                currency="EUR",
                destination="acct_1",
                transfer_group=f"order{i}",
                source_transaction=None,
                idempotency_key=f"sav-payout-{i}",
                metadata={},
            )
            for i in range(n)
        )
    )
    return [t.id for t in made]


def test_a_pass_of_fifty_transfers_never_has_more_than_max_in_flight_open_and_all_are_made() -> None:
    for limit in (MAX_IN_FLIGHT, 3):
        escrow = StripeEscrow(api_key="sk_test_x", api_base="http://127.0.0.1:9", max_in_flight=limit)
        fake = CountingTransfers()
        escrow.client.v1.transfers = fake  # type: ignore[misc,assignment]
        ids = asyncio.run(_pass(escrow, 50))
        assert ids == [f"tr_order{i}" for i in range(50)]
        assert sorted(fake.keys) == sorted(f"sav-payout-{i}" for i in range(50))
        assert fake.most_open == limit
        # A second event loop (another test, another worker run) gets its own slots.
        assert asyncio.run(_pass(escrow, 20)) == [f"tr_order{i}" for i in range(20)]
        assert fake.most_open == limit
