"""Stripe's ``/v1`` surface this server answers: each route is Stripe's own path template (as spelled in its
OpenAPI description), the store method that answers it, and every param it accepts.

The contract test (tests/stripe_server/test_contract.py) reads this table: each path and method must exist
in Stripe's description, and each accepted param must be one Stripe documents for that operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devtools.stripe_server.errors import unrecognized_url
from devtools.stripe_server.params import CREATED, METADATA, PAGE


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Stripe's template, e.g. /v1/transfers/{id}/reversals
    handler: str  # the Store method: handler(ctx, params, *path_args)
    params: tuple[str, ...] = ()  # besides expand[], always accepted
    connect: bool = False  # honours the Stripe-Account header (acts as that connected account)

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{\w+\}", "([A-Za-z0-9_]+)", self.path) + "$")


ACCOUNT_PARAMS = (
    "type",
    "country",
    "email",
    "default_currency",
    "business_type",
    "business_profile[name]",
    "business_profile[url]",
    "business_profile[mcc]",
    "business_profile[product_description]",
    "capabilities[card_payments][requested]",
    "capabilities[transfers][requested]",
    "tos_acceptance[date]",
    "tos_acceptance[ip]",
    "tos_acceptance[service_agreement]",
    *METADATA,
)
CHARGE_PARAMS = (
    "amount",
    "currency",
    "transfer_group",
    "description",
    "source",
    "customer",
    "receipt_email",
    "statement_descriptor",
    *METADATA,
)
REFUND_PARAMS = (
    "charge",
    "payment_intent",
    "amount",
    "reason",
    "instructions_email",
    "refund_application_fee",
    "reverse_transfer",
    *METADATA,
)
TRANSFER_PARAMS = (
    "amount",
    "currency",
    "destination",
    "transfer_group",
    "source_transaction",
    "description",
    "metadata[*]",  # no `metadata=` to unset: there is nothing to unset yet
)
REVERSAL_PARAMS = ("amount", "description", "refund_application_fee", *METADATA)
PAYOUT_PARAMS = ("amount", "currency", "description", "statement_descriptor", "metadata[*]")

ROUTES = [
    Route("POST", "/v1/accounts", "create_account", ACCOUNT_PARAMS),
    Route("GET", "/v1/accounts", "list_accounts", (*CREATED, *PAGE)),
    Route("GET", "/v1/accounts/{account}", "retrieve_account"),
    Route("POST", "/v1/charges", "create_charge", CHARGE_PARAMS),
    Route("GET", "/v1/charges/{charge}", "retrieve_charge"),
    Route("GET", "/v1/payment_intents/{intent}", "retrieve_payment_intent", ("client_secret",)),
    Route("POST", "/v1/refunds", "create_refund", REFUND_PARAMS),
    Route("GET", "/v1/refunds", "list_refunds", ("charge", "payment_intent", *CREATED, *PAGE)),
    Route("GET", "/v1/refunds/{refund}", "retrieve_refund"),
    Route("POST", "/v1/refunds/{refund}", "update_refund", METADATA),
    Route("POST", "/v1/transfers", "create_transfer", TRANSFER_PARAMS),
    Route("GET", "/v1/transfers", "list_transfers", ("destination", "transfer_group", *CREATED, *PAGE)),
    Route("GET", "/v1/transfers/{transfer}", "retrieve_transfer"),
    Route("POST", "/v1/transfers/{transfer}", "update_transfer", ("description", *METADATA)),
    Route("POST", "/v1/transfers/{id}/reversals", "create_reversal", REVERSAL_PARAMS),
    Route("GET", "/v1/transfers/{id}/reversals", "list_reversals", PAGE),
    Route("GET", "/v1/transfers/{transfer}/reversals/{id}", "retrieve_reversal"),
    Route("POST", "/v1/transfers/{transfer}/reversals/{id}", "update_reversal", METADATA),
    Route("GET", "/v1/balance", "balance", connect=True),
    Route(
        "GET",
        "/v1/balance_transactions",
        "list_balance_transactions",
        ("type", "source", "currency", *CREATED, *PAGE),
        connect=True,
    ),
    Route("GET", "/v1/balance_transactions/{id}", "retrieve_balance_transaction", connect=True),
    Route("POST", "/v1/payouts", "create_payout", PAYOUT_PARAMS, connect=True),
    Route("GET", "/v1/payouts", "list_payouts", ("status", *CREATED, *PAGE), connect=True),
    Route("GET", "/v1/payouts/{payout}", "retrieve_payout", connect=True),
    Route("GET", "/v1/events", "list_events", ("type", *CREATED, *PAGE)),
    Route("GET", "/v1/events/{id}", "retrieve_event"),
]
_COMPILED = [(route, route.regex) for route in ROUTES]


def match(method: str, path: str) -> tuple[Route, tuple[str, ...]]:
    for route, regex in _COMPILED:
        m = regex.match(path)
        if m and route.method == method:
            return route, m.groups()
    raise unrecognized_url(method, path)
