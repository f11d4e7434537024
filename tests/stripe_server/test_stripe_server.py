"""The local Stripe-compatible server, driven by the official SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.e2e.helpers import API_KEY, StripeServerProcess

# stripe's HTTPXClient posts its encoded form as `data=<str>`, which httpx 0.28 deprecates (not ours to fix).
pytestmark = [
    pytest.mark.slow,  # the local Stripe-compatible server runs as a real process
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

CANONICAL = Path("/work/shared/stripe/fixtures3.json")
VENDORED = Path(__file__).resolve().parents[2] / "devtools" / "stripe_server" / "fixtures.json"


def charge(server: StripeServerProcess, amount: int = 1000, **params: Any) -> Any:
    return server.client().v1.charges.create(
        params={"amount": amount, "currency": "eur", "transfer_group": "order_1", **params}
    )


def refund(server: StripeServerProcess, key: str | None = None, retries: int = 0, **params: Any) -> Any:
    options = {"idempotency_key": key} if key else {}
    return server.client(retries=retries).v1.refunds.create(params=params, options=options)  # type: ignore[arg-type]


def total(server: StripeServerProcess, charge_id: str) -> dict[str, Any]:
    return dict(server.ctl("GET", "refunds_total", charge=charge_id))


# --- refunds ---------------------------------------------------------------------------------------------


def test_partial_refund_then_over_refund_then_the_rest_then_already_refunded(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    assert (ch.status, ch.captured, ch.amount_refunded, ch.refunded) == ("succeeded", True, 0, False)

    first = refund(server, charge=ch.id, amount=300, reason="requested_by_customer", metadata={"dispute_id": "d1"})
    assert (first.object, first.status, first.amount, first.currency) == ("refund", "succeeded", 300, "eur")
    assert first.metadata.to_dict() == {"dispute_id": "d1"}
    assert first.payment_intent == ch.payment_intent

    with pytest.raises(stripe.InvalidRequestError) as too_large:
        refund(server, charge=ch.id, amount=701)
    assert (too_large.value.http_status, too_large.value.code, too_large.value.param) == (
        400,
        "amount_too_large",
        "amount",
    )
    assert (
        str(too_large.value.user_message) == "Refund amount (€7.01) is greater than unrefunded amount on charge (€7.00)"
    )

    rest = refund(server, charge=ch.id)  # no amount: everything left
    assert rest.amount == 700

    with pytest.raises(stripe.InvalidRequestError) as already:
        refund(server, charge=ch.id, amount=1)
    assert (already.value.http_status, already.value.code) == (400, "charge_already_refunded")
    assert already.value.user_message == f"Charge {ch.id} has already been refunded."

    after = server.client().v1.charges.retrieve(ch.id)
    assert (after.amount_refunded, after.refunded) == (1000, True)
    assert [r.id for r in after.refunds.data] == [rest.id, first.id]  # newest first
    assert total(server, ch.id)["amount_refunded"] == 1000

    listed = server.client().v1.refunds.list(params={"charge": ch.id, "limit": 1})
    assert (listed.object, listed.url, listed.has_more, [r.id for r in listed.data]) == (
        "list",
        "/v1/refunds",
        True,
        [rest.id],
    )
    assert server.client().v1.refunds.retrieve(first.id).amount == 300


def test_refund_by_payment_intent_and_errors(server: StripeServerProcess) -> None:
    ch = charge(server, 500)
    pi = server.client().v1.payment_intents.retrieve(ch.payment_intent)
    assert (pi.status, pi.latest_charge, pi.amount_received) == ("succeeded", ch.id, 500)

    by_pi = refund(server, payment_intent=pi.id, amount=200)
    assert (by_pi.charge, by_pi.payment_intent) == (ch.id, pi.id)

    with pytest.raises(stripe.InvalidRequestError) as missing:
        refund(server, charge="ch_doesnotexist", amount=1)
    assert (missing.value.http_status, missing.value.code, missing.value.param) == (404, "resource_missing", "charge")
    assert missing.value.user_message == "No such charge: 'ch_doesnotexist'"

    with pytest.raises(stripe.InvalidRequestError) as reason:
        refund(server, charge=ch.id, reason="because")
    assert reason.value.param == "reason"

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        refund(server, charge=ch.id, colour="blue")
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "colour")

    with pytest.raises(stripe.InvalidRequestError) as neither:
        refund(server, amount=1)
    assert neither.value.code == "parameter_missing"

    with pytest.raises(stripe.InvalidRequestError) as expand:
        server.client().v1.refunds.retrieve(by_pi.id, params={"expand": ["nothing"]})
    assert expand.value.param == "expand"
    expanded = server.client().v1.refunds.retrieve(by_pi.id, params={"expand": ["charge", "balance_transaction"]})
    assert (expanded.charge.id, expanded.balance_transaction.amount) == (ch.id, -200)


def test_authentication_is_required(server: StripeServerProcess) -> None:
    response = server.control.post("/v1/refunds", data={"charge": "ch_x"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError) as live:
        server.client(api_key="sk_live_0123456789abcdef").v1.balance.retrieve()
    assert live.value.http_status == 401
    unknown = server.api("GET", "/v1/nothing")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing)")


# --- idempotency -----------------------------------------------------------------------------------------


def test_idempotent_replay_and_key_reuse_with_other_params(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    first = refund(server, "key-1", charge=ch.id, amount=100, metadata={"refund_id": "r1"})
    again = refund(server, "key-1", charge=ch.id, amount=100, metadata={"refund_id": "r1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers

    with pytest.raises(stripe.IdempotencyError) as reuse:
        refund(server, "key-1", charge=ch.id, amount=200, metadata={"refund_id": "r1"})
    assert reuse.value.http_status == 400
    assert reuse.value.error.type == "idempotency_error"
    assert total(server, ch.id)["refunds"] == 1

    # A stored error replays too (Stripe saves every result once the endpoint ran)...
    with pytest.raises(stripe.InvalidRequestError):
        refund(server, "key-2", charge=ch.id, amount=5000)
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        refund(server, "key-2", charge=ch.id, amount=5000)
    assert replayed.value.headers["Idempotent-Replayed"] == "true"
    # ...but not a request that failed parameter validation.
    with pytest.raises(stripe.InvalidRequestError):
        refund(server, "key-3", charge=ch.id, amount=50, colour="blue")
    assert refund(server, "key-3", charge=ch.id, amount=50).amount == 50

    # Keys live 24 hours.
    server.ctl("POST", "clock", advance_seconds=24 * 3600 + 1)
    assert refund(server, "key-1", charge=ch.id, amount=200).id != first.id


async def test_twenty_concurrent_requests_with_one_key_make_one_refund(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    server.ctl("POST", "latency", ms=20, path="/v1/refunds")  # keep them in flight together
    client = server.client()

    async def one() -> Any:
        return await client.v1.refunds.create_async(
            params={"charge": ch.id, "amount": 100}, options={"idempotency_key": "same-key"}
        )

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert len({r.id for r in results}) == 1
    assert sum(r.last_response.headers.get("Idempotent-Replayed") == "true" for r in results) == 19
    assert total(server, ch.id) | {"charge": None} == {
        "charge": None,
        "currency": "eur",
        "amount": 1000,
        "amount_refunded": 100,
        "succeeded": 100,
        "pending": 0,
        "failed": 0,
        "refunds": 1,
    }


# --- faults ----------------------------------------------------------------------------------------------


def test_500_before_apply_then_the_sdk_retry_succeeds_once(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/refunds", mode="error_500", count=1)
    done = refund(server, "k-500-sdk", retries=2, charge=ch.id, amount=100)
    assert done.amount == 100
    assert total(server, ch.id)["refunds"] == 1

    server.ctl("POST", "faults", path="/v1/refunds", mode="error_500", count=1)
    with pytest.raises(stripe.APIError) as failed:
        refund(server, "k-500-manual", charge=ch.id, amount=100)
    assert failed.value.http_status == 500
    assert total(server, ch.id)["refunds"] == 1  # nothing applied, nothing stored under the key
    manual = refund(server, "k-500-manual", charge=ch.id, amount=100)
    assert "Idempotent-Replayed" not in manual.last_response.headers
    assert total(server, ch.id)["refunds"] == 2


def test_apply_then_drop_the_connection_then_the_retry_replays(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/refunds", mode="drop_after_apply", count=1)
    done = refund(server, "k-drop-sdk", retries=1, charge=ch.id, amount=100)
    assert done.last_response.headers["Idempotent-Replayed"] == "true"
    assert total(server, ch.id)["refunds"] == 1

    server.ctl("POST", "faults", path="/v1/refunds", mode="drop_after_apply", count=1)
    with pytest.raises(stripe.APIConnectionError):
        refund(server, "k-drop-manual", charge=ch.id, amount=200)
    applied = total(server, ch.id)
    assert (applied["amount_refunded"], applied["refunds"]) == (300, 2)  # applied, though unanswered
    replay = refund(server, "k-drop-manual", charge=ch.id, amount=200)
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert total(server, ch.id)["refunds"] == 2


async def test_apply_then_hold_the_answer_while_a_retry_replays_it(server: StripeServerProcess) -> None:
    ch = charge(server, 1000)
    server.ctl("POST", "faults", path="/v1/refunds", mode="hold_after_apply", ms=60_000, count=1)
    client = server.client()
    held = asyncio.create_task(
        client.v1.refunds.create_async(params={"charge": ch.id, "amount": 300}, options={"idempotency_key": "k-hold"})
    )
    while total(server, ch.id)["refunds"] == 0:  # applied while its caller still waits for the answer
        await asyncio.sleep(0.02)
    assert not held.done()
    replay = await client.v1.refunds.create_async(
        params={"charge": ch.id, "amount": 300}, options={"idempotency_key": "k-hold"}
    )
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    held.cancel()  # the first caller gives up (or dies): the refund stays made once
    assert (total(server, ch.id)["amount_refunded"], total(server, ch.id)["refunds"]) == (300, 1)


# --- balance (transfers and reversals: test_connect.py) --------------------------------------------------


def test_balance_transactions_are_listed_and_filtered(server: StripeServerProcess) -> None:
    client = server.client()
    shop = client.v1.accounts.create(params={"type": "express", "country": "FR"})
    ch = charge(server, 1000)
    re = refund(server, charge=ch.id, amount=250)
    tr = client.v1.transfers.create(params={"amount": 400, "currency": "eur", "destination": shop.id})

    listed = client.v1.balance_transactions.list(params={"limit": 10})
    assert (listed.object, listed.url, listed.has_more) == ("list", "/v1/balance_transactions", False)
    assert [(t.type, t.amount, t.source) for t in listed.data] == [
        ("transfer", -400, tr.id),
        ("refund", -250, re.id),
        ("charge", 1000, ch.id),
    ]
    first_page = client.v1.balance_transactions.list(params={"limit": 2})
    assert first_page.has_more
    second_page = client.v1.balance_transactions.list(params={"limit": 2, "starting_after": first_page.data[-1].id})
    assert [t.source for t in second_page.data] == [ch.id]
    assert not second_page.has_more

    created = listed.data[0].created
    window = client.v1.balance_transactions.list(params={"created": {"gte": created, "lte": created}})
    assert len(window.data) == 3
    assert client.v1.balance_transactions.list(params={"created": {"gte": created + 10}}).data == []
    assert client.v1.balance_transactions.list(params={"type": "refund"}).data[0].id == re.balance_transaction
    assert client.v1.balance_transactions.retrieve(re.balance_transaction).net == -250

    balance = client.v1.balance.retrieve()
    assert [(b.currency, b.amount) for b in balance.available] == [("eur", 350)]


# --- pending refunds, dashboard refunds, webhooks --------------------------------------------------------


def test_webhooks_are_signed_so_that_the_sdk_verifies_them(
    server: StripeServerProcess, receiver: tuple[str, list[Any]]
) -> None:
    url, received = receiver
    secret = "whsec_test_secret"
    server.ctl("POST", "webhook", url=url, secret=secret)
    ch = charge(server, 1000)
    done = refund(server, "wh-1", charge=ch.id, amount=100, metadata={"refund_id": "r1"})
    deliveries = server.ctl("POST", "webhooks/drain")["deliveries"]
    assert [d["delivered"] for d in deliveries] == [True, True]

    events = [stripe.Webhook.construct_event(r.body, r.headers["stripe-signature"], secret) for r in received]
    assert [e.type for e in events] == ["refund.created", "charge.refunded"]
    assert events[0].data.object.id == done.id
    assert events[0].request.idempotency_key == "wh-1"
    assert events[1].data.object.refunds.data[0].id == done.id
    assert events[1].data.previous_attributes.amount_refunded == 0
    assert server.client().v1.events.retrieve(events[0].id).type == "refund.created"

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(received[0].body, received[0].headers["stripe-signature"], "whsec_other")
    tampered = received[0].body.replace(b'"amount": 100', b'"amount": 999')
    assert tampered != received[0].body
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, received[0].headers["stripe-signature"], secret)


def test_pending_refund_then_failed_or_succeeded_with_their_webhooks(
    server: StripeServerProcess, receiver: tuple[str, list[Any]]
) -> None:
    url, received = receiver
    server.ctl("POST", "webhook", url=url, secret="whsec_x")
    ch = charge(server, 1000)
    server.ctl("POST", "next_refund_pending", charge=ch.id, count=2)
    failing = refund(server, charge=ch.id, amount=300)
    settling = refund(server, charge=ch.id, amount=200)
    assert (failing.status, settling.status) == ("pending", "pending")
    assert refund(server, charge=ch.id, amount=100).status == "succeeded"  # only the next two
    assert total(server, ch.id)["pending"] == 500

    failed = server.ctl("POST", f"refunds/{failing.id}/settle", status="failed", failure_reason="lost_or_stolen_card")
    assert (failed["status"], failed["failure_reason"]) == ("failed", "lost_or_stolen_card")
    assert server.ctl("POST", f"refunds/{settling.id}/settle", status="succeeded")["status"] == "succeeded"
    assert total(server, ch.id) | {"charge": None} == {
        "charge": None,
        "currency": "eur",
        "amount": 1000,
        "amount_refunded": 300,
        "succeeded": 300,
        "pending": 0,
        "failed": 300,
        "refunds": 3,
    }
    again = server.client().v1.refunds.retrieve(failing.id)
    assert again.failure_balance_transaction.startswith("txn_")
    assert server.client().v1.balance_transactions.retrieve(again.failure_balance_transaction).amount == 300

    server.ctl("POST", "webhooks/drain")
    events = [stripe.Webhook.construct_event(r.body, r.headers["stripe-signature"], "whsec_x") for r in received]
    after_creation = [(e.type, e.data.object.id, e.data.object.status) for e in events if e.type.startswith("refund.")]
    assert after_creation[-3:] == [
        ("refund.updated", failing.id, "failed"),
        ("refund.failed", failing.id, "failed"),
        ("refund.updated", settling.id, "succeeded"),
    ]
    assert events[-1].data.previous_attributes.status == "pending"


def test_dashboard_refund_emits_webhooks_without_an_idempotency_key(
    server: StripeServerProcess, receiver: tuple[str, list[Any]]
) -> None:
    url, received = receiver
    server.ctl("POST", "webhook", url=url, secret="whsec_x")
    ch = charge(server, 1000)
    made = server.ctl("POST", "dashboard_refund", charge=ch.id, amount=400, reason="duplicate")
    assert (made["object"], made["amount"], made["reason"]) == ("refund", 400, "duplicate")
    server.ctl("POST", "webhooks/drain")
    event = stripe.Webhook.construct_event(received[0].body, received[0].headers["stripe-signature"], "whsec_x")
    assert (event.type, event.data.object.id, event.request.idempotency_key) == ("refund.created", made["id"], None)
    assert total(server, ch.id)["amount_refunded"] == 400


def test_an_unreachable_webhook_url_is_not_fatal(server: StripeServerProcess) -> None:
    server.ctl("POST", "webhook", url="http://127.0.0.1:9/nowhere", secret="whsec_x")
    ch = charge(server, 1000)
    assert refund(server, charge=ch.id, amount=1).status == "succeeded"
    deliveries = server.ctl("POST", "webhooks/drain")["deliveries"]
    assert deliveries
    assert not any(d["delivered"] for d in deliveries)
    assert all(d["error"] for d in deliveries)


# --- every field of Stripe's canonical examples ----------------------------------------------------------


def test_every_object_carries_every_key_of_stripes_canonical_example(server: StripeServerProcess) -> None:
    canonical = json.loads((CANONICAL if CANONICAL.exists() else VENDORED).read_text())["resources"]
    ch = server.api("POST", "/v1/charges", data={"amount": 1000, "currency": "usd"}).json()
    pi = server.api("GET", f"/v1/payment_intents/{ch['payment_intent']}").json()
    server.ctl("POST", "next_refund_pending", charge=ch["id"])
    re = server.api("POST", "/v1/refunds", data={"charge": ch["id"], "amount": 100}).json()
    failed = server.ctl("POST", f"refunds/{re['id']}/settle", status="failed")
    account = server.api("POST", "/v1/accounts", data={"type": "custom", "country": "US"}).json()
    tr = server.api(
        "POST", "/v1/transfers", data={"amount": 500, "currency": "usd", "destination": account["id"]}
    ).json()
    trr = server.api("POST", f"/v1/transfers/{tr['id']}/reversals", data={"amount": 100}).json()
    payout = server.api(
        "POST", "/v1/payouts", data={"amount": 100, "currency": "usd"}, headers={"Stripe-Account": account["id"]}
    ).json()
    txn = server.api("GET", f"/v1/balance_transactions/{re['balance_transaction']}").json()
    balance = server.api("GET", "/v1/balance").json()
    events = server.api("GET", "/v1/events").json()["data"]
    listed = server.api("GET", "/v1/refunds", params={"charge": ch["id"]}).json()

    returned: dict[str, list[dict[str, Any]]] = {
        "charge": [ch, server.api("GET", f"/v1/charges/{ch['id']}").json()],
        "payment_intent": [pi],
        "refund": [re, failed, *listed["data"]],
        "transfer": [tr, server.api("GET", f"/v1/transfers/{tr['id']}").json()],
        "transfer_reversal": [trr, server.api("GET", f"/v1/transfers/{tr['id']}/reversals/{trr['id']}").json()],
        "balance_transaction": [txn, *server.api("GET", "/v1/balance_transactions").json()["data"]],
        "balance": [balance],
        "event": events,
        "account": [account, server.api("GET", f"/v1/accounts/{account['id']}").json()],
        "payout": [payout],
    }
    assert events
    for kind, objects in returned.items():
        expected = set(canonical[kind])
        for obj in objects:
            assert obj["object"] == kind
            assert expected <= set(obj), f"{kind} {obj.get('id')} lacks {sorted(expected - set(obj))}"
    for event in events:
        assert set(canonical[event["data"]["object"]["object"]]) <= set(event["data"]["object"])
    assert listed == listed | {"object": "list", "url": "/v1/refunds", "has_more": False}
    assert API_KEY.startswith("sk_test_")
