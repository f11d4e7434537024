"""The Stripe adapter of the escrow port (app/payouts/stripe_escrow.py) over real HTTP, against the local
Stripe-compatible server: what it sends, what it keeps of the answers, and how it classifies errors."""

from __future__ import annotations

import time

import pytest

from app.payouts.gateway import PaymentProviderError, ProviderRefund
from app.payouts.stripe_escrow import StripeEscrow
from tests.e2e.helpers import API_KEY, StripeServerProcess

pytestmark = [
    pytest.mark.slow,  # the local Stripe-compatible server runs as a real process
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]


async def card_refund(
    escrow: StripeEscrow, charge_id: str, amount: int, key: str, metadata: dict[str, str]
) -> ProviderRefund:
    return await escrow.refund(
        charge_id=charge_id,
        payment_intent_id=None,
        amount=amount,
        currency="EUR",
        idempotency_key=key,
        metadata=metadata,
    )


@pytest.fixture
def escrow(stripe_server: StripeServerProcess) -> StripeEscrow:
    stripe_server.ctl("POST", "reset")
    return StripeEscrow(api_key=API_KEY, api_base=stripe_server.url)


async def test_refund_by_charge_and_by_payment_intent_with_our_metadata(
    escrow: StripeEscrow,
    stripe_server: StripeServerProcess,
) -> None:
    charge = stripe_server.client().v1.charges.create(params={"amount": 2_000, "currency": "eur"})
    made = await card_refund(escrow, charge.id, 700, "rfd_a", {"refund_id": "rfd_a", "order_id": "o1"})
    assert (made.status, made.amount, made.currency) == ("succeeded", 700, "EUR")
    assert await escrow.retrieve_refund(made.id) == made
    at_stripe = stripe_server.client().v1.refunds.retrieve(made.id)
    assert (at_stripe.charge, at_stripe.reason, at_stripe.metadata.to_dict()) == (
        charge.id,
        "requested_by_customer",
        {"refund_id": "rfd_a", "order_id": "o1"},
    )
    again = await card_refund(escrow, charge.id, 700, "rfd_a", {"refund_id": "rfd_a", "order_id": "o1"})
    assert again.id == made.id  # same key: Stripe's first answer, not a second refund

    by_intent = await escrow.refund(
        charge_id="",
        payment_intent_id=charge.payment_intent,
        amount=300,
        currency="EUR",
        idempotency_key="rfd_b",
        metadata={"refund_id": "rfd_b"},
    )
    assert stripe_server.client().v1.refunds.retrieve(by_intent.id).charge == charge.id
    assert stripe_server.ctl("GET", "refunds_total", charge=charge.id)["amount_refunded"] == 1_000


async def test_provider_codes_are_kept_and_errors_classified(
    escrow: StripeEscrow,
    stripe_server: StripeServerProcess,
) -> None:
    charge = stripe_server.client().v1.charges.create(params={"amount": 500, "currency": "eur"})
    with pytest.raises(PaymentProviderError) as too_large:
        await card_refund(escrow, charge.id, 501, "rfd_big", {})
    assert (too_large.value.code, too_large.value.transient) == ("amount_too_large", False)

    with pytest.raises(PaymentProviderError) as unknown:
        await escrow.retrieve_refund("re_missing")
    assert (unknown.value.code, unknown.value.transient) == ("resource_missing", False)

    # 500s past the SDK's own retry: transient, worth trying again later with the same key.
    stripe_server.ctl("POST", "faults", path="/v1/refunds", mode="error_500", count=2)
    with pytest.raises(PaymentProviderError) as down:
        await card_refund(escrow, charge.id, 100, "rfd_down", {})
    assert down.value.transient
    assert stripe_server.ctl("GET", "refunds_total", charge=charge.id)["refunds"] == 0

    made = await card_refund(escrow, charge.id, 100, "rfd_ok", {})
    with pytest.raises(PaymentProviderError) as reused:  # our key for another amount: a bug, never retried
        await card_refund(escrow, charge.id, 200, "rfd_ok", {})
    assert not reused.value.transient
    assert "same parameters" in str(reused.value)
    assert stripe_server.ctl("GET", "refunds_total", charge=charge.id)["amount_refunded"] == made.amount


async def test_transfer_reversal_retrieval_and_insufficient_funds(
    escrow: StripeEscrow,
    stripe_server: StripeServerProcess,
) -> None:
    client = stripe_server.client()
    stripe_server.ctl("POST", "accounts", id="acct_shop9")  # transfers go to existing connected accounts only
    charge = client.v1.charges.create(params={"amount": 1_000, "currency": "eur", "transfer_group": "ord_9"})
    transfer = client.v1.transfers.create(
        params={
            "amount": 900,
            "currency": "eur",
            "destination": "acct_shop9",
            "transfer_group": "ord_9",
            "source_transaction": charge.id,
        }
    )
    reversal = await escrow.reverse_transfer(
        transfer_id=transfer.id, amount=400, idempotency_key="rfd_c:reversal", metadata={"refund_id": "rfd_c"}
    )
    assert (reversal.amount, reversal.currency) == (400, "EUR")
    replayed = await escrow.reverse_transfer(
        transfer_id=transfer.id, amount=400, idempotency_key="rfd_c:reversal", metadata={"refund_id": "rfd_c"}
    )
    assert replayed.id == reversal.id
    seen = await escrow.retrieve_transfer(transfer.id)
    assert (seen.amount, seen.amount_reversed, seen.destination, seen.transfer_group) == (
        900,
        400,
        "acct_shop9",
        "ord_9",
    )
    with pytest.raises(PaymentProviderError) as short:
        await escrow.reverse_transfer(transfer_id=transfer.id, amount=501, idempotency_key="rfd_d", metadata={})
    assert (short.value.code, short.value.transient) == ("insufficient_funds", False)


async def test_balance_transactions_of_a_period_page_by_page(
    escrow: StripeEscrow,
    stripe_server: StripeServerProcess,
) -> None:
    client = stripe_server.client()
    start = int(time.time()) - 5
    charge = client.v1.charges.create(params={"amount": 1_000, "currency": "eur"})
    refund = await card_refund(escrow, charge.id, 250, "rfd_e", {})
    stripe_server.ctl("POST", "accounts", id="acct_shop1")
    client.v1.transfers.create(params={"amount": 600, "currency": "eur", "destination": "acct_shop1"})
    end = int(time.time()) + 5

    first = await escrow.list_balance_transactions(created_from=start, created_to=end, limit=2)
    assert (first.has_more, len(first.items)) == (True, 2)
    rest = await escrow.list_balance_transactions(
        created_from=start, created_to=end, starting_after=first.items[-1].id, limit=2
    )
    assert not rest.has_more
    movements = [(t.type, t.amount, t.currency) for t in first.items + rest.items]
    assert movements == [("transfer", -600, "EUR"), ("refund", -250, "EUR"), ("charge", 1_000, "EUR")]
    assert first.items[1].source == refund.id
    assert (await escrow.list_balance_transactions(created_from=end + 10, created_to=end + 20)).items == []
