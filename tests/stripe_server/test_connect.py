"""Connect on the local Stripe-compatible server, through the official SDK over real HTTP: connected accounts
and their balances, transfers (``source_transaction``, ``transfer_group``), reversals, payouts, the balance
transactions every movement writes, the test clock, and injected faults on transfers and reversals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stripe

from tests.e2e.helpers import StripeServerProcess

pytestmark = [
    pytest.mark.slow,  # the local Stripe-compatible server runs as a real process
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]


def shop(server: StripeServerProcess, **params: Any) -> Any:
    return server.client().v1.accounts.create(
        params={"type": "express", "country": "FR", "capabilities": {"transfers": {"requested": True}}, **params}
    )


def charge(server: StripeServerProcess, amount: int = 1000, currency: str = "eur") -> Any:
    return server.client().v1.charges.create(params={"amount": amount, "currency": currency})


def transfer(server: StripeServerProcess, key: str | None = None, retries: int = 0, **params: Any) -> Any:
    options = {"idempotency_key": key} if key else {}
    return server.client(retries=retries).v1.transfers.create(
        params={"currency": "eur", **params},
        options=options,  # type: ignore[arg-type]
    )


def reverse(server: StripeServerProcess, transfer_id: str, key: str | None = None, **params: Any) -> Any:
    options = {"idempotency_key": key} if key else {}
    return server.client().v1.transfers.reversals.create(transfer_id, params=params, options=options)  # type: ignore[arg-type]


def available(server: StripeServerProcess, account: str | None = None) -> dict[str, int]:
    options = {"stripe_account": account} if account else {}
    balance = server.client().v1.balance.retrieve(options=options)  # type: ignore[arg-type]
    return {b.currency: b.amount for b in balance.available}


def movements(server: StripeServerProcess, account: str | None = None, **params: Any) -> list[tuple[str, int, str]]:
    options = {"stripe_account": account} if account else {}
    listed = server.client().v1.balance_transactions.list(params={"limit": 100, **params}, options=options)  # type: ignore[arg-type]
    return [(t.type, t.amount, t.source.split("_")[0]) for t in listed.data]


# --- accounts ----------------------------------------------------------------------------------------------


def test_a_connected_account_is_created_retrieved_listed_and_starts_with_nothing(server: StripeServerProcess) -> None:
    client = server.client()
    made = shop(server, email="kettles@example.com", metadata={"seller_id": "s1"})
    assert (made.object, made.type, made.country, made.default_currency) == ("account", "express", "FR", "eur")
    assert (made.charges_enabled, made.payouts_enabled, made.capabilities.to_dict()) == (
        True,
        True,
        {"transfers": "active"},
    )
    assert client.v1.accounts.retrieve(made.id).metadata.to_dict() == {"seller_id": "s1"}
    other = client.v1.accounts.create(params={"type": "custom", "country": "US"})
    assert [a.id for a in client.v1.accounts.list().data] == [other.id, made.id]
    assert available(server, made.id) == {"eur": 0}

    seeded = server.ctl("POST", "accounts", id="acct_demo_kettles", country="FR")  # a shop's preset id
    assert (seeded["id"], client.v1.accounts.retrieve("acct_demo_kettles").default_currency) == (
        "acct_demo_kettles",
        "eur",
    )
    assert server.ctl("POST", "accounts", id="acct_demo_kettles")["created"] == seeded["created"]  # unchanged

    with pytest.raises(stripe.PermissionError) as unknown:
        client.v1.accounts.retrieve("acct_nobody")
    assert (unknown.value.http_status, unknown.value.error.code) == (403, "account_invalid")
    with pytest.raises(stripe.PermissionError):
        available(server, "acct_nobody")
    with pytest.raises(stripe.InvalidRequestError) as bad_type:
        client.v1.accounts.create(params={"type": "premium"})
    assert bad_type.value.param == "type"


def test_the_stripe_account_header_is_refused_where_this_server_does_not_honour_it(
    server: StripeServerProcess,
) -> None:
    made = shop(server)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        server.client().v1.transfers.list(options={"stripe_account": made.id})
    assert refused.value.param == "Stripe-Account"


# --- transfers ---------------------------------------------------------------------------------------------


def test_a_transfer_moves_money_from_the_platform_to_the_connected_account(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    made = transfer(
        server,
        "release:p1",
        amount=800,
        destination=seller.id,
        transfer_group="ord_1",
        source_transaction=ch.id,
        metadata={"payout_id": "p1"},
        description="order ord_1",
    )
    assert (made.object, made.amount, made.destination, made.transfer_group, made.source_transaction) == (
        "transfer",
        800,
        seller.id,
        "ord_1",
        ch.id,
    )
    assert (made.metadata.to_dict(), made.description, made.amount_reversed, made.reversed) == (
        {"payout_id": "p1"},
        "order ord_1",
        0,
        False,
    )
    assert available(server) == {"eur": 200}
    assert available(server, seller.id) == {"eur": 800}
    assert movements(server) == [("transfer", -800, "tr"), ("charge", 1000, "ch")]
    assert movements(server, seller.id) == [("payment", 800, "py")]
    txn = server.client().v1.balance_transactions.retrieve(made.balance_transaction)
    assert (txn.type, txn.source, txn.net, txn.reporting_category) == ("transfer", made.id, -800, "transfer")

    server.client().v1.transfers.update(made.id, params={"metadata": {"note": "x"}})
    assert server.client().v1.transfers.retrieve(made.id).metadata.to_dict() == {"payout_id": "p1", "note": "x"}


def test_a_transfer_to_an_unknown_destination_is_refused_as_no_such_destination(server: StripeServerProcess) -> None:
    charge(server, 1000)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        transfer(server, amount=100, destination="acct_nobody")
    assert (unknown.value.http_status, unknown.value.code, unknown.value.param) == (
        400,
        "resource_missing",
        "destination",
    )
    assert unknown.value.user_message == "No such destination: 'acct_nobody'"
    assert available(server) == {"eur": 1000}

    no_transfers = shop(server, capabilities={"card_payments": {"requested": True}})
    with pytest.raises(stripe.InvalidRequestError) as incapable:
        transfer(server, amount=100, destination=no_transfers.id)
    assert incapable.value.code == "insufficient_capabilities_for_transfer"


def test_a_transfer_from_a_charge_carries_no_more_than_the_charge_still_holds(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.client().v1.refunds.create(params={"charge": ch.id, "amount": 300})
    first = transfer(server, amount=500, destination=seller.id, source_transaction=ch.id)

    with pytest.raises(stripe.InvalidRequestError) as too_much:  # 1000 - 300 refunded - 500 transferred = 200
        transfer(server, amount=201, destination=seller.id, source_transaction=ch.id)
    assert (too_much.value.http_status, too_much.value.code, too_much.value.param) == (
        400,
        "balance_insufficient",
        "amount",
    )
    reverse(server, first.id, amount=100)  # what comes back may leave again
    assert transfer(server, amount=300, destination=seller.id, source_transaction=ch.id).amount == 300

    with pytest.raises(stripe.InvalidRequestError) as currency:
        transfer(server, amount=1, currency="usd", destination=seller.id, source_transaction=ch.id)
    assert currency.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        transfer(server, amount=1, destination=seller.id, source_transaction="ch_nothing")
    assert (missing.value.code, missing.value.param) == ("resource_missing", "source_transaction")


def test_a_transfer_without_a_source_needs_the_platform_balance(server: StripeServerProcess) -> None:
    seller = shop(server)
    with pytest.raises(stripe.InvalidRequestError) as empty:
        transfer(server, amount=100, destination=seller.id)
    assert (empty.value.http_status, empty.value.code) == (400, "balance_insufficient")
    server.ctl("POST", "platform_balance", amount=100, currency="eur")
    assert transfer(server, amount=100, destination=seller.id).amount == 100
    assert available(server) == {"eur": 0}


def test_transfers_are_listed_by_destination_and_transfer_group_page_by_page(server: StripeServerProcess) -> None:
    one, two = shop(server), shop(server)
    server.ctl("POST", "platform_balance", amount=10_000, currency="eur")
    made = [
        transfer(server, amount=100 + i, destination=(one if i % 2 else two).id, transfer_group=f"ord_{i % 3}")
        for i in range(6)
    ]
    client = server.client()
    to_one = client.v1.transfers.list(params={"destination": one.id})
    assert [t.id for t in to_one.data] == [made[5].id, made[3].id, made[1].id]
    assert (to_one.object, to_one.url, to_one.has_more) == ("list", "/v1/transfers", False)
    group = client.v1.transfers.list(params={"transfer_group": "ord_0"})
    assert [t.id for t in group.data] == [made[3].id, made[0].id]
    page = client.v1.transfers.list(params={"limit": 4})
    assert page.has_more
    rest = client.v1.transfers.list(params={"limit": 4, "starting_after": page.data[-1].id})
    assert [t.id for t in page.data + rest.data] == [t.id for t in reversed(made)]
    assert server.ctl("GET", "transfers_total", destination=one.id) == {
        "transfers": 3,
        "amount": 101 + 103 + 105,
        "amount_reversed": 0,
        "reversals": 0,
    }


# --- reversals ---------------------------------------------------------------------------------------------


def test_partial_reversals_then_the_rest_update_the_transfer_and_both_balances(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    made = transfer(server, amount=800, destination=seller.id, source_transaction=ch.id)

    part = reverse(server, made.id, "refund:r1", amount=300, metadata={"refund_id": "r1"}, refund_application_fee=True)
    assert (part.object, part.amount, part.transfer, part.metadata.to_dict()) == (
        "transfer_reversal",
        300,
        made.id,
        {"refund_id": "r1"},
    )
    txn = server.client().v1.balance_transactions.retrieve(part.balance_transaction)
    assert (txn.type, txn.amount, txn.source, txn.reporting_category) == (
        "transfer_refund",
        300,
        part.id,
        "transfer_reversal",
    )
    assert (available(server), available(server, seller.id)) == ({"eur": 500}, {"eur": 500})

    rest = reverse(server, made.id)  # no amount: everything left
    assert rest.amount == 500
    after = server.client().v1.transfers.retrieve(made.id)
    assert (after.amount_reversed, after.reversed, [r.id for r in after.reversals.data]) == (
        800,
        True,
        [rest.id, part.id],
    )
    assert (available(server), available(server, seller.id)) == ({"eur": 1000}, {"eur": 0})
    assert movements(server, seller.id) == [
        ("payment_refund", -500, "pyr"),
        ("payment_refund", -300, "pyr"),
        ("payment", 800, "py"),
    ]
    listed = server.client().v1.transfers.reversals.list(made.id, params={"limit": 1})
    assert (listed.url, listed.has_more, [r.id for r in listed.data]) == (
        f"/v1/transfers/{made.id}/reversals",
        True,
        [rest.id],
    )
    server.client().v1.transfers.reversals.update(made.id, part.id, params={"metadata": {"note": "x"}})
    assert server.client().v1.transfers.reversals.retrieve(made.id, part.id).metadata.to_dict() == {
        "refund_id": "r1",
        "note": "x",
    }

    with pytest.raises(stripe.InvalidRequestError) as done:
        reverse(server, made.id, amount=1)
    assert done.value.user_message == f"The transfer {made.id} is already fully reversed."


def test_a_reversal_larger_than_what_is_left_of_the_transfer_is_refused(server: StripeServerProcess) -> None:
    seller = shop(server)
    made = transfer(server, amount=500, destination=seller.id, source_transaction=charge(server, 1000).id)
    reverse(server, made.id, amount=200)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        reverse(server, made.id, amount=301)
    assert (too_much.value.http_status, too_much.value.code, too_much.value.param) == (
        400,
        "insufficient_funds",
        "amount",
    )
    assert server.client().v1.transfers.retrieve(made.id).amount_reversed == 200


def test_a_reversal_the_connected_account_cannot_cover_is_refused_with_balance_insufficient(
    server: StripeServerProcess,
) -> None:
    seller = shop(server)
    made = transfer(server, amount=800, destination=seller.id, source_transaction=charge(server, 1000).id)
    paid_out = server.client().v1.payouts.create(
        params={"amount": 700, "currency": "eur"}, options={"stripe_account": seller.id}
    )
    assert (paid_out.object, paid_out.status, available(server, seller.id)) == ("payout", "paid", {"eur": 100})
    assert movements(server, seller.id, type="payout") == [("payout", -700, "po")]

    with pytest.raises(stripe.InvalidRequestError) as short:
        reverse(server, made.id, "refund:r2", amount=300, metadata={"refund_id": "r2"})
    assert (short.value.http_status, short.value.code, short.value.error.type, short.value.param) == (
        400,
        "balance_insufficient",
        "invalid_request_error",
        "amount",
    )
    after = server.client().v1.transfers.retrieve(made.id)
    assert (after.amount_reversed, after.reversals.data, available(server, seller.id)) == (0, [], {"eur": 100})
    assert [t for t in movements(server) if t[0] == "transfer_refund"] == []
    assert reverse(server, made.id, amount=100).amount == 100  # what the account holds can come back

    with pytest.raises(stripe.InvalidRequestError) as payout_short:
        server.client().v1.payouts.create(
            params={"amount": 1, "currency": "eur"}, options={"stripe_account": seller.id}
        )
    assert payout_short.value.code == "balance_insufficient"


# --- idempotency and faults --------------------------------------------------------------------------------


async def test_twenty_concurrent_transfers_with_one_key_make_one_transfer(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.ctl("POST", "latency", ms=20, path="/v1/transfers")
    client = server.client()
    params = {"amount": 600, "currency": "eur", "destination": seller.id, "source_transaction": ch.id}

    async def one() -> Any:
        return await client.v1.transfers.create_async(params=params, options={"idempotency_key": "release:p1"})  # type: ignore[arg-type]

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert len({r.id for r in results}) == 1
    assert available(server, seller.id) == {"eur": 600}
    with pytest.raises(stripe.IdempotencyError):
        transfer(server, "release:p1", amount=601, destination=seller.id, source_transaction=ch.id)


def test_a_transfer_that_hits_a_500_before_applying_is_made_once_by_the_sdk_retry(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/transfers", mode="error_500", count=1)
    made = transfer(server, "release:p2", retries=2, amount=400, destination=seller.id, source_transaction=ch.id)
    assert "Idempotent-Replayed" not in made.last_response.headers
    assert server.ctl("GET", "transfers_total", destination=seller.id)["transfers"] == 1

    server.ctl("POST", "faults", path="/v1/transfers", mode="error_500", count=1)
    with pytest.raises(stripe.APIError):
        transfer(server, "release:p3", amount=100, destination=seller.id, source_transaction=ch.id)
    assert server.ctl("GET", "transfers_total", destination=seller.id)["transfers"] == 1  # nothing applied


def test_a_transfer_applied_then_unanswered_is_replayed_to_the_retry(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/transfers", mode="drop_after_apply", count=1)
    with pytest.raises(stripe.APIConnectionError):
        transfer(server, "release:p4", amount=400, destination=seller.id, source_transaction=ch.id)
    assert available(server, seller.id) == {"eur": 400}  # applied, though unanswered
    replay = transfer(server, "release:p4", amount=400, destination=seller.id, source_transaction=ch.id)
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert server.ctl("GET", "transfers_total", destination=seller.id) | {"amount_reversed": None} == {
        "transfers": 1,
        "amount": 400,
        "amount_reversed": None,
        "reversals": 0,
    }


def test_a_transfer_applied_then_answered_500_is_replayed_to_the_retry(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/transfers", mode="error_500_after_apply", count=1)
    with pytest.raises(stripe.APIError):
        transfer(server, "release:p5", amount=300, destination=seller.id, source_transaction=ch.id)
    assert available(server, seller.id) == {"eur": 300}  # applied, though the caller saw a 500
    replay = transfer(server, "release:p5", amount=300, destination=seller.id, source_transaction=ch.id)
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert (replay.amount, server.ctl("GET", "transfers_total", destination=seller.id)["transfers"]) == (300, 1)


def test_a_reversal_applied_then_unanswered_is_replayed_to_the_sdk_retry(server: StripeServerProcess) -> None:
    seller = shop(server)
    made = transfer(server, amount=800, destination=seller.id, source_transaction=charge(server, 1000).id)
    server.ctl("POST", "faults", path="/v1/transfers/*/reversals", mode="drop_after_apply", count=1)
    done = server.client(retries=1).v1.transfers.reversals.create(
        made.id, params={"amount": 300}, options={"idempotency_key": "refund:r3"}
    )
    assert done.last_response.headers["Idempotent-Replayed"] == "true"
    assert server.ctl("GET", "transfers_total", destination=seller.id)["reversals"] == 1
    assert available(server, seller.id) == {"eur": 500}


async def test_a_reversal_held_after_applying_is_replayed_to_a_retry_meanwhile(server: StripeServerProcess) -> None:
    seller = shop(server)
    made = transfer(server, amount=800, destination=seller.id, source_transaction=charge(server, 1000).id)
    server.ctl("POST", "faults", path="/v1/transfers/*/reversals", mode="hold_after_apply", ms=60_000, count=1)
    client = server.client()
    held = asyncio.create_task(
        client.v1.transfers.reversals.create_async(made.id, params={"amount": 300}, options={"idempotency_key": "k"})
    )
    while server.ctl("GET", "transfers_total", destination=seller.id)["reversals"] == 0:
        await asyncio.sleep(0.02)
    assert not held.done()
    replay = await client.v1.transfers.reversals.create_async(
        made.id, params={"amount": 300}, options={"idempotency_key": "k"}
    )
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    held.cancel()
    assert server.ctl("GET", "transfers_total", destination=seller.id)["amount_reversed"] == 300


# --- balance transactions and the test clock ---------------------------------------------------------------


def test_every_movement_writes_a_balance_transaction_filtered_by_type_and_source(server: StripeServerProcess) -> None:
    seller = shop(server)
    ch = charge(server, 1000)
    server.ctl("POST", "next_refund_pending", charge=ch.id)
    failing = server.client().v1.refunds.create(params={"charge": ch.id, "amount": 100})
    server.ctl("POST", f"refunds/{failing.id}/settle", status="failed")
    server.client().v1.refunds.create(params={"charge": ch.id, "amount": 50})
    made = transfer(server, amount=600, destination=seller.id, source_transaction=ch.id)
    reverse(server, made.id, amount=200)
    assert movements(server) == [
        ("transfer_refund", 200, "trr"),
        ("transfer", -600, "tr"),
        ("refund", -50, "re"),
        ("refund_failure", 100, "re"),
        ("refund", -100, "re"),
        ("charge", 1000, "ch"),
    ]
    assert movements(server, type="refund_failure") == [("refund_failure", 100, "re")]
    assert movements(server, source=made.id) == [("transfer", -600, "tr")]
    assert available(server) == {"eur": 1000 - 50 - 600 + 200}
    assert movements(server, seller.id) == [("payment_refund", -200, "pyr"), ("payment", 600, "py")]


def test_the_test_clock_gives_new_objects_the_created_a_test_chooses(server: StripeServerProcess) -> None:
    seller = shop(server)
    day = 86_400
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    assert server.ctl("POST", "clock", now=start) == {"now": start, "frozen": True}
    ch = charge(server, 1000)
    server.ctl("POST", "clock", advance_seconds=day)
    made = transfer(server, amount=700, destination=seller.id, source_transaction=ch.id)
    server.ctl("POST", "clock", advance_seconds=day)
    back = reverse(server, made.id, amount=100)
    assert (ch.created, made.created, back.created) == (start, start + day, start + 2 * day)

    def period(**created: int) -> list[str]:
        return [t[0] for t in movements(server, created=created)]

    assert period(gte=start, lt=start + day) == ["charge"]
    assert period(gte=start + day, lte=start + 2 * day) == ["transfer_refund", "transfer"]
    assert period(gt=start + day) == ["transfer_refund"]
    first = server.client().v1.balance_transactions.list(params={"limit": 1})
    older = server.client().v1.balance_transactions.list(params={"limit": 2, "starting_after": first.data[0].id})
    newer = server.client().v1.balance_transactions.list(params={"limit": 2, "ending_before": older.data[-1].id})
    assert [t.type for t in older.data] == ["transfer", "charge"]
    assert [t.type for t in newer.data] == ["transfer_refund", "transfer"]

    server.ctl("POST", "clock", now=start - day)  # back in time: lists stay ordered by created
    early = charge(server, 5)
    assert [t.source for t in server.client().v1.balance_transactions.list().data][-1] == early.id
    assert server.ctl("POST", "clock", frozen=False)["frozen"] is False
    with pytest.raises(stripe.InvalidRequestError) as unknown_bound:
        movements(server, created={"eq": start})
    assert unknown_bound.value.param == "created[eq]"


def test_bulk_seeded_charges_are_real_charges_that_fund_transfers_and_are_not_made_twice(
    server: StripeServerProcess,
) -> None:
    made = server.ctl("POST", "charges/bulk", id_prefix="ch_bulk_", count=3, amount=5000, currency="eur")
    assert made == {"created": 3, "existing": 0}
    again = server.ctl("POST", "charges/bulk", id_prefix="ch_bulk_", count=4, amount=5000, currency="eur")
    assert again == {"created": 1, "existing": 3}
    client = server.client()
    seeded = client.v1.charges.retrieve("ch_bulk_2")
    assert (seeded.amount, seeded.currency, seeded.status, seeded.amount_refunded) == (5000, "eur", "succeeded", 0)
    assert available(server)["eur"] == 4 * 5000
    account = shop(server)
    first = transfer(server, amount=4500, destination=account.id, source_transaction="ch_bulk_2")
    assert first.source_transaction == "ch_bulk_2"
    with pytest.raises(stripe.InvalidRequestError) as refused:  # the charge holds 500 more, not 600
        transfer(server, amount=600, destination=account.id, source_transaction="ch_bulk_2")
    assert refused.value.code == "balance_insufficient"
    bad = server.control.post("/_control/charges/bulk", json={"id_prefix": "py_", "count": 1, "amount": 1})
    assert bad.status_code == 400
