"""The contract: the local Stripe-compatible server holds to Stripe's own OpenAPI description (spec3.json).

Every answer of a walk through every route (objects, lists, errors) is validated against the schema Stripe
documents for that operation and status, with objects closed to fields Stripe does not describe; every
param a route accepts (routes.ROUTES) must be one Stripe documents for that path and method. So the fake
cannot drift from Stripe: a new field, a misspelt one, a wrong type or enum value, or a param Stripe would
refuse fails here. The checks are themselves tested on deliberately wrong objects and routes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.stripe_server.routes import ROUTES, Route, match
from devtools.stripe_server.spec import NEWER_THAN_SPEC, SUBSET_PATH, Contract, subset
from tests.e2e.helpers import StripeServerProcess

pytestmark = [pytest.mark.slow]  # the local Stripe-compatible server runs as a real process

FULL_SPEC = Path("/work/shared/stripe/spec3.json")  # Stripe's whole description, where it is at hand
FIXTURES = Path(__file__).resolve().parents[2] / "devtools" / "stripe_server" / "fixtures.json"
CONTRACT = Contract.load()


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: dict[str, Any]


@dataclass
class Recorder:
    """Calls the server's ``/v1`` over HTTP and keeps every answer for the contract."""

    server: StripeServerProcess
    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(
        self, method: str, path: str, form: dict[str, Any] | None = None, *, account: str | None = None, key: str = ""
    ) -> dict[str, Any]:
        headers = {"Stripe-Account": account} if account else {}
        if key:
            headers["Idempotency-Key"] = key
        if method == "GET":
            response = self.server.api(method, path, params=form, headers=headers)
        else:
            response = self.server.api(method, path, data=form, headers=headers)
        body = response.json()
        self.exchanges.append(Exchange(method, path, response.status_code, body))
        return dict(body)


def walk_every_route(api: Recorder) -> None:
    """Each route answered at least once with 200, and the errors a client meets along the way."""
    shop = api(
        "POST",
        "/v1/accounts",
        {
            "type": "express",
            "country": "FR",
            "capabilities[transfers][requested]": "true",
            "business_profile[name]": "Kettles",
            "tos_acceptance[service_agreement]": "recipient",
            "metadata[seller_id]": "s1",
        },
    )
    api("POST", "/v1/accounts", {"type": "custom", "country": "US", "email": "bikes@example.com"})
    api("GET", "/v1/accounts", {"limit": "1"})
    api("GET", f"/v1/accounts/{shop['id']}")
    api("GET", "/v1/accounts/acct_nobody")  # 403 account_invalid

    charge = api("POST", "/v1/charges", {"amount": "1000", "currency": "eur", "transfer_group": "ord_1"})
    api("GET", f"/v1/charges/{charge['id']}", {"expand[]": "balance_transaction"})
    api("GET", f"/v1/payment_intents/{charge['payment_intent']}")
    api("POST", "/v1/nothing", {})  # an unknown URL: Stripe's 404
    api("POST", "/v1/charges", {"amount": "1000", "currency": "eur", "colour": "blue"})  # parameter_unknown

    server = api.server
    server.ctl("POST", "next_refund_pending", charge=charge["id"])
    pending = api("POST", "/v1/refunds", {"charge": charge["id"], "amount": "100", "reason": "requested_by_customer"})
    server.ctl("POST", f"refunds/{pending['id']}/settle", status="failed", failure_reason="expired_or_canceled_card")
    refund = api("POST", "/v1/refunds", {"payment_intent": charge["payment_intent"], "amount": "50"}, key="r-1")
    api("POST", "/v1/refunds", {"payment_intent": charge["payment_intent"], "amount": "51"}, key="r-1")  # reused key
    api("POST", "/v1/refunds", {"charge": charge["id"], "amount": "999999"})  # amount_too_large
    api("POST", f"/v1/refunds/{refund['id']}", {"metadata[refund_id]": "r1"})
    api("GET", f"/v1/refunds/{pending['id']}")
    api("GET", "/v1/refunds", {"charge": charge["id"], "created[gte]": "0"})
    api("GET", "/v1/refunds/re_nothing")  # 404 resource_missing

    transfer = api(
        "POST",
        "/v1/transfers",
        {
            "amount": "700",
            "currency": "eur",
            "destination": shop["id"],
            "transfer_group": "ord_1",
            "source_transaction": charge["id"],
            "description": "ord_1",
            "metadata[payout_id]": "p1",
        },
        key="release:p1",
    )
    api(
        "POST", "/v1/transfers", {"amount": "1", "currency": "eur", "destination": "acct_nobody"}
    )  # no such destination
    api(
        "POST",
        "/v1/transfers",
        {"amount": "5000", "currency": "eur", "destination": shop["id"], "source_transaction": charge["id"]},
    )  # balance_insufficient
    api("POST", f"/v1/transfers/{transfer['id']}", {"metadata[note]": "x", "description": "order 1"})
    api("GET", f"/v1/transfers/{transfer['id']}", {"expand[]": "destination"})
    api("GET", "/v1/transfers", {"destination": shop["id"], "transfer_group": "ord_1", "limit": "5"})
    reversal = api(
        "POST",
        f"/v1/transfers/{transfer['id']}/reversals",
        {"amount": "200", "metadata[refund_id]": "r1", "refund_application_fee": "false"},
        key="rev-1",
    )
    api("POST", f"/v1/transfers/{transfer['id']}/reversals/{reversal['id']}", {"metadata[note]": "y"})
    api("GET", f"/v1/transfers/{transfer['id']}/reversals/{reversal['id']}")
    api("GET", f"/v1/transfers/{transfer['id']}/reversals", {"limit": "1"})
    api("POST", "/v1/payouts", {"amount": "450", "currency": "eur", "metadata[k]": "v"}, account=shop["id"])
    api("POST", f"/v1/transfers/{transfer['id']}/reversals", {"amount": "100"})  # balance_insufficient
    api("POST", "/v1/payouts", {"amount": "1", "currency": "eur"}, account=shop["id"])  # balance_insufficient
    payouts = api("GET", "/v1/payouts", {"status": "paid"}, account=shop["id"])
    api("GET", f"/v1/payouts/{payouts['data'][0]['id']}", account=shop["id"])

    api("GET", "/v1/balance")
    api("GET", "/v1/balance", account=shop["id"])
    txns = api("GET", "/v1/balance_transactions", {"created[gte]": "0", "created[lt]": "9999999999", "limit": "3"})
    api("GET", "/v1/balance_transactions", {"starting_after": txns["data"][-1]["id"], "type": "refund_failure"})
    api("GET", "/v1/balance_transactions", {"source": transfer["id"], "currency": "eur"})
    api("GET", "/v1/balance_transactions", account=shop["id"])
    api("GET", f"/v1/balance_transactions/{txns['data'][0]['id']}", {"expand[]": "source"})
    events = api("GET", "/v1/events", {"type": "refund.created"})
    api("GET", f"/v1/events/{events['data'][0]['id']}")


@pytest.fixture
def walked(server: StripeServerProcess) -> list[Exchange]:
    api = Recorder(server)
    walk_every_route(api)
    return api.exchanges


# --- the server's answers ----------------------------------------------------------------------------------


def test_every_answer_of_the_server_conforms_to_the_schema_stripe_documents(walked: list[Exchange]) -> None:
    problems = []
    for exchange in walked:
        try:
            route, _ = match(exchange.method, exchange.path)
        except Exception:  # an unknown URL: only Stripe's error shape applies
            schema = CONTRACT.response_schema("GET", "/v1/balance", exchange.status)
        else:
            schema = CONTRACT.response_schema(route.method, route.path, exchange.status)
        found = CONTRACT.problems(schema, exchange.body)
        for event in exchange.body.get("data", []) if exchange.body.get("url") == "/v1/events" else []:
            found += CONTRACT.component_problems(event["data"]["object"]["object"], event["data"]["object"])
        problems += [f"{exchange.method} {exchange.path} -> {exchange.status}: {p}" for p in found]
    assert problems == []


def test_the_walk_reaches_every_route_and_the_errors_a_client_meets(walked: list[Exchange]) -> None:
    answered = set()
    for exchange in walked:
        if exchange.status == 200:
            answered.add(match(exchange.method, exchange.path)[0])
    assert [f"{r.method} {r.path}" for r in ROUTES if r not in answered] == []
    errors = {(x.status, x.body["error"].get("code") or x.body["error"]["type"]) for x in walked if x.status != 200}
    assert errors == {
        (400, "amount_too_large"),
        (400, "balance_insufficient"),
        (400, "idempotency_error"),
        (400, "parameter_unknown"),
        (400, "resource_missing"),
        (403, "account_invalid"),
        (404, "invalid_request_error"),  # an unknown URL: no code
        (404, "resource_missing"),
    }


def test_every_route_and_every_param_it_accepts_is_one_stripe_documents() -> None:
    assert [problem for route in ROUTES for problem in CONTRACT.route_problems(route)] == []


# --- the contract's own teeth ------------------------------------------------------------------------------


def test_the_contract_refuses_a_field_a_type_or_a_value_stripe_does_not_have() -> None:
    canonical = json.loads(FIXTURES.read_text())["resources"]
    transfer, txn = canonical["transfer"], canonical["balance_transaction"]
    assert CONTRACT.component_problems("transfer", transfer) == []

    misspelt = {**transfer, "amount_reversd": 0}
    assert CONTRACT.component_problems("transfer", misspelt) == [
        "(the object): Additional properties are not allowed ('amount_reversd' was unexpected)"
    ]
    assert CONTRACT.component_problems("transfer", {**transfer, "amount": "800"}) == [
        'amount: "800" is not of type "integer"'
    ]
    assert CONTRACT.component_problems("balance_transaction", {**txn, "type": "transfer_reversal"})[0].startswith(
        "type: "
    )
    nested = copy.deepcopy(transfer)
    nested["reversals"]["data"] = [{**canonical["transfer_reversal"], "amount": None}]
    assert CONTRACT.component_problems("transfer", nested) == ['reversals/data/0/amount: null is not of type "integer"']
    without = {k: v for k, v in canonical["transfer_reversal"].items() if k != "transfer"}
    assert CONTRACT.component_problems("transfer_reversal", without) == [
        '(the object): "transfer" is a required property'
    ]
    error = {"error": {"type": "invalid_request_error", "message": "x", "colour": "blue"}}
    assert CONTRACT.component_problems("error", error) != []
    listed = CONTRACT.response_schema("GET", "/v1/transfers", 200)
    assert CONTRACT.problems(listed, {"object": "lists", "data": [], "has_more": False, "url": "/v1/transfers"}) != []


def test_the_contract_refuses_a_path_a_method_or_a_param_stripe_does_not_have() -> None:
    wrong = Route("POST", "/v1/transfers", "create_transfer", ("amount", "colour", "metadata", "created[gte]"))
    assert CONTRACT.route_problems(wrong) == [
        "POST /v1/transfers: Stripe does not accept the param colour",
        "POST /v1/transfers: Stripe does not accept the param metadata",  # no `metadata=` on a new transfer
        "POST /v1/transfers: Stripe does not accept the param created[gte]",
    ]
    nested = Route("POST", "/v1/accounts", "create_account", ("capabilities[transfers][wanted]", "metadata[*]"))
    assert CONTRACT.route_problems(nested) == [
        "POST /v1/accounts: Stripe does not accept the param capabilities[transfers][wanted]"
    ]
    assert CONTRACT.route_problems(Route("GET", "/v1/transfers", "x", ("created[eq]",))) == [
        "GET /v1/transfers: Stripe does not accept the param created[eq]"
    ]
    assert CONTRACT.route_problems(Route("DELETE", "/v1/transfers", "x")) == [
        "DELETE /v1/transfers: Stripe has no DELETE on this path"
    ]
    assert CONTRACT.route_problems(Route("GET", "/v1/transfer", "x")) == [
        "GET /v1/transfer: no such path in Stripe's description"
    ]


def test_each_field_tolerated_beyond_the_description_is_one_stripes_canonical_examples_need() -> None:
    canonical = json.loads(FIXTURES.read_text())["resources"]

    def failing(contract: Contract) -> list[str]:
        return [kind for kind, example in canonical.items() if contract.component_problems(kind, example)]

    assert failing(CONTRACT) == []
    unneeded = []
    for schema, fields in NEWER_THAN_SPEC.items():
        for name in fields:
            fewer = {s: f - {name} if s == schema else f for s, f in NEWER_THAN_SPEC.items()}
            if not failing(Contract(CONTRACT.spec, allowances=fewer)):
                unneeded.append(f"{schema}.{name}")
    assert unneeded == []


def test_the_vendored_description_is_what_stripes_full_description_yields() -> None:
    if not FULL_SPEC.exists():
        pytest.skip(f"{FULL_SPEC} is not on this machine")
    assert subset(json.loads(FULL_SPEC.read_text())) == json.loads(SUBSET_PATH.read_text())
