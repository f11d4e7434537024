"""A correctly signed Stripe event is still input: its content is checked before any money moves.

An event that does not fit (an amount that is not a positive integer, another currency, another charge,
another amount than the refund it names, missing or mistyped objects) changes no money, is kept for
finance (``GET /v1/provider-events?status=rejected``) and is answered 200 ``rejected``; a signed body
that is not an event at all is a 400. Never a 500 (Stripe retries those for three days)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
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

Hooked = tuple[TestClient[Any], Settings]


@pytest.fixture(scope="module")
def hooked(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    from app.main import create_app

    settings = make_settings(
        db_url,
        SAV_STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        SAV_ATTACHMENTS_DIR=str(tmp_path_factory.mktemp("files")),
    )
    with TestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as client:
        yield client, settings


class Pending:
    """An order of 5 000 EUR with one refund of 900 that the provider is still processing."""

    def __init__(self, hooked: Hooked, auth: Tokens, world: World) -> None:
        self.client, self.settings = hooked
        self.case = Case(self.client, auth, world)
        self.charge_id: str = self.case.order["payment"]["charge_id"]
        escrow = FakeEscrow()
        escrow.status = "pending"
        self.refund_id: str = grant(
            self.client,
            self.case.arbitrator,
            order_id=self.case.order_id,
            kind="partial",
            amount=money(900),
            funded_by="operator",
        )["refund_id"]
        pay(self.settings, escrow)
        self.provider_ref: str = self.refund()["provider_ref"]
        self.finance = auth("finance")

    def refund(self) -> dict[str, Any]:
        return self.client.get(f"/v1/refunds/{self.refund_id}", headers=self.case.agent).json()  # type: ignore[no-any-return]

    def refunds(self) -> list[dict[str, Any]]:
        listed = self.client.get("/v1/refunds", params={"order_id": self.case.order_id}, headers=self.case.agent)
        return listed.json()["items"]  # type: ignore[no-any-return]

    def about_ours(self, **refund: Any) -> dict[str, Any]:
        """A refund event about our pending refund, as Stripe sends it; ``refund`` overrides fields."""
        body = {
            "id": self.provider_ref,
            "amount": 900,
            "currency": "eur",
            "status": "succeeded",
            "charge": self.charge_id,
            "metadata": {"refund_id": self.refund_id},
            **refund,
        }
        return refund_event("refund.updated", body)

    def dashboard(self, **refund: Any) -> dict[str, Any]:
        """``charge.refunded`` for a refund someone made in the Stripe dashboard on our order's charge."""
        body = {"id": f"re_{uuid.uuid4().hex[:14]}", "amount": 700, "currency": "eur", "status": "succeeded"}
        return charge_refunded(self.charge_id, {**body, "metadata": {}, **refund})

    def finance_sees(self, event_id: str) -> dict[str, Any]:
        cursor = None
        while True:
            params = {"status": "rejected", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = self.client.get("/v1/provider-events", params=params, headers=self.finance)
            assert page.status_code == 200, page.text
            for item in page.json()["items"]:
                if item["event_id"] == event_id:
                    return item  # type: ignore[no-any-return]
            cursor = page.json()["next_cursor"]
            assert cursor, f"{event_id} is not among the rejected events"

    def is_rejected(self, event: dict[str, Any], reason: str) -> dict[str, Any]:
        """Sent, it is answered 200 ``rejected``, moves no money, and finance sees it with its reason."""
        before = (order_money(self.client, self.case), self.refund()["status"], len(self.refunds()))
        answer = send(self.client, event)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "rejected"), answer.text
        assert (order_money(self.client, self.case), self.refund()["status"], len(self.refunds())) == before
        kept = self.finance_sees(event["id"])
        assert (kept["status"], kept["reason"], kept["type"]) == ("rejected", reason, event["type"])
        assert kept["detail"]
        again = send(self.client, event)  # Stripe may deliver it again: still nothing moves
        assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
        return kept


def charge_refunded(charge_id: str, *refunds: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "currency": "eur",
                "refunds": {"object": "list", "data": list(refunds)},
            }
        },
    }


@pytest.fixture
def pending(hooked: Hooked, auth: Tokens, world: World) -> Iterator[Pending]:
    case = Pending(hooked, auth, world)
    yield case
    # Settled by a fitting event, so no refund is left due for workers that other tests run.
    send(case.client, case.about_ours())
    assert case.refund()["status"] == "succeeded"


@pytest.mark.parametrize("amount", [-227, 0, 700.0, 12.5, "700", True, None, 10**20], ids=repr)
def test_a_dashboard_refund_whose_amount_is_not_a_positive_integer_is_rejected(pending: Pending, amount: Any) -> None:
    kept = pending.is_rejected(pending.dashboard(amount=amount), "event.malformed")
    assert "amount" in kept["detail"]
    assert order_money(pending.client, pending.case) == (900, 4_100)  # only our pending 900


@pytest.mark.parametrize("amount", [-900, 0, 900.0, "900"], ids=repr)
def test_an_event_for_our_refund_whose_amount_is_not_a_positive_integer_is_rejected(
    pending: Pending, amount: Any
) -> None:
    pending.is_rejected(pending.about_ours(amount=amount), "event.malformed")
    assert pending.refund()["status"] == "pending"


def test_a_refund_in_another_currency_than_the_order_is_rejected(pending: Pending) -> None:
    kept = pending.is_rejected(pending.dashboard(currency="usd"), "event.currency_mismatch")
    assert kept["amount"] == money(700, "USD")
    assert kept["order_id"] == pending.case.order_id
    pending.is_rejected(pending.about_ours(currency="usd"), "event.currency_mismatch")


def test_an_event_naming_our_refund_with_another_charge_or_amount_is_rejected(pending: Pending) -> None:
    kept = pending.is_rejected(pending.about_ours(charge="ch_someone_else"), "event.charge_mismatch")
    assert (kept["refund_id"], kept["order_id"]) == (pending.refund_id, pending.case.order_id)
    pending.is_rejected(pending.about_ours(amount=4_000), "event.amount_mismatch")
    pending.is_rejected(pending.about_ours(charge="ch_someone_else", amount=227), "event.amount_mismatch")
    # The metadata names our refund, but the provider refund is another one than we recorded.
    pending.is_rejected(pending.about_ours(id="re_another_refund"), "event.refund_mismatch")
    assert pending.refund()["status"] == "pending"


def test_a_dashboard_refund_larger_than_the_order_is_rejected(pending: Pending) -> None:
    pending.is_rejected(pending.dashboard(amount=5_001), "event.exceeds_charge")


def _parent(event: dict[str, Any], path: str) -> tuple[Any, Any]:
    *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
    node: Any = event
    for key in parents:
        node = node[key]
    return node, last


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        node, last = _parent(event, path)
        del node[last]

    return mutate


def _setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        node, last = _parent(event, path)
        node[last] = value

    return mutate


MALFORMED_REFUND_EVENTS = {
    "no data": _without("data"),
    "no data.object": _without("data.object"),
    "data.object is a list": _setting("data.object", [1, 2]),
    "no refund id": _without("data.object.id"),
    "no amount": _without("data.object.amount"),
    "no currency": _without("data.object.currency"),
    "a currency that is not a code": _setting("data.object.currency", "euro"),
    "a charge that is not an id": _setting("data.object.charge", {"id": 7}),
    "metadata that is not an object": _setting("data.object.metadata", "refund"),
    "a status that is not a string": _setting("data.object.status", 3),
    "a failure reason with a NUL byte": _setting("data.object.failure_reason", "card\u0000closed"),
    "a refund id with a NUL byte": _setting("data.object.id", "re_\u0000"),
}


@pytest.mark.parametrize("mutate", MALFORMED_REFUND_EVENTS.values(), ids=MALFORMED_REFUND_EVENTS.keys())
def test_a_refund_event_missing_or_mistyping_what_we_read_is_kept_and_rejected(
    pending: Pending, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = pending.about_ours()
    mutate(event)
    pending.is_rejected(event, "event.malformed")


MALFORMED_CHARGE_EVENTS = {
    "no charge id": _without("data.object.id"),
    "refunds that are a list": _setting("data.object.refunds", []),
    "refunds.data that is an object": _setting("data.object.refunds.data", {"id": "re_1"}),
    "a listed refund without currency": _setting("data.object.refunds.data", [{"id": "re_1", "amount": 5}]),
    "a refund on another charge": _setting("data.object.refunds.data.0.charge", "ch_someone_else"),
}


@pytest.mark.parametrize("mutate", MALFORMED_CHARGE_EVENTS.values(), ids=MALFORMED_CHARGE_EVENTS.keys())
def test_a_charge_event_missing_or_mistyping_what_we_read_is_kept_and_rejected(
    pending: Pending, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = pending.dashboard()
    mutate(event)
    pending.is_rejected(event, "event.malformed")


def signed(client: TestClient[Any], payload: str) -> Any:
    header = stripe.WebhookSignature.generate_signature_header(
        payload, STRIPE_WEBHOOK_SECRET, timestamp=int(time.time())
    )
    return client.post(
        "/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": header, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": "refund.updated", "data": {}}),  # no id to keep it under
        json.dumps({"id": "evt_" + "x" * 300, "type": "refund.updated"}),
        json.dumps({"id": 42, "type": "refund.updated"}),
        json.dumps({"id": "evt_\u0000", "type": "refund.updated"}),
        json.dumps({"id": f"evt_{uuid.uuid4().hex}"}),  # no type
        "[" * 5_000 + "]" * 5_000,
    ],
    ids=["not json", "an array", "no id", "a long id", "a numeric id", "a NUL in the id", "no type", "deep"],
)
def test_a_signed_body_that_is_not_an_event_is_a_400(hooked: Hooked, payload: str) -> None:
    client, _ = hooked
    answer = signed(client, payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "body"


def test_valid_events_still_apply_after_rejected_ones(pending: Pending) -> None:
    pending.is_rejected(pending.about_ours(amount=-900), "event.malformed")
    pending.is_rejected(pending.dashboard(amount=-227), "event.malformed")
    settled = send(pending.client, pending.about_ours())
    assert (settled.status_code, settled.json()["outcome"]) == (200, "applied")
    assert pending.refund()["status"] == "succeeded"
    imported = send(pending.client, pending.dashboard(amount=700))
    assert (imported.status_code, imported.json()["outcome"]) == (200, "applied")
    assert order_money(pending.client, pending.case) == (1_600, 3_400)
    assert ledger_is_balanced(pending.settings)

    listed = pending.client.get("/v1/provider-events", params={"status": "applied"}, headers=pending.finance)
    mine = [e for e in listed.json()["items"] if e["order_id"] == pending.case.order_id]
    assert {e["event_id"] for e in mine} >= {imported.json()["received"], settled.json()["received"]}


def test_only_finance_and_admins_read_provider_events(hooked: Hooked, auth: Tokens) -> None:
    client, _ = hooked
    for role in ("finance", "admin"):
        assert client.get("/v1/provider-events", headers=auth(role)).status_code == 200, role
    for role in ("buyer", "seller", "agent", "arbitrator", "marketplace"):
        answer = client.get("/v1/provider-events", headers=auth(role, seller_id="shop-x" if role == "seller" else ""))
        assert answer.status_code == 403, role
    assert client.get("/v1/provider-events", params={"status": "lost"}, headers=auth("finance")).status_code == 400
