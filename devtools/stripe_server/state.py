"""In-memory Stripe account: charges, payment intents, refunds, transfers, reversals, balance, events.

Every method here is synchronous and validates everything before it changes anything, so the server can
run it under one asyncio lock and a failed call never leaves a half-applied change. Objects start as a
deep copy of Stripe's canonical example (``fixtures.json``) so they carry every field the API returns.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.stripe_server.errors import StripeError, invalid, missing, no_such, unknown_param

FIXTURES_PATH = Path(__file__).with_name("fixtures.json")
FIXTURES: dict[str, dict[str, Any]] = json.loads(FIXTURES_PATH.read_text())["resources"]
API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 sends; events carry it
PLATFORM = "platform"
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card",
    "expired_or_canceled_card",
    "charge_for_pending_refund_disputed",
    "insufficient_funds",
    "declined",
    "merchant_request",
    "unknown",
)
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$", "jpy": "¥"}
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]+$")
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def fixture(kind: str) -> dict[str, Any]:
    return copy.deepcopy(FIXTURES[kind])


def money(amount: int, currency: str) -> str:
    """Amounts as Stripe writes them in messages: ``$12.50``, ``¥1200``, ``12.50 CHF``."""
    value = f"{amount}" if currency in ZERO_DECIMAL else f"{amount / 100:.2f}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


@dataclass
class Context:
    request_id: str
    idempotency_key: str | None = None
    stripe_account: str | None = None


# --- parameter helpers ---------------------------------------------------------------------------------


def check_params(params: dict[str, Any], allowed: set[str]) -> list[str]:
    for name in params:
        if name not in allowed and name != "expand":
            raise unknown_param(name)
    expand = params.get("expand", [])
    if isinstance(expand, str):
        expand = [expand]
    if not isinstance(expand, list) or not all(isinstance(e, str) for e in expand):
        raise invalid("Invalid array", param="expand")
    return expand


def get_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param=name)
    return value


def get_int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int = 1) -> int | None:
    raw = get_str(params, name, required=required)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer") from None
    if value < minimum:
        raise invalid(
            f"This value must be greater than or equal to {minimum}.", param=name, code="parameter_invalid_integer"
        )
    return value


def get_currency(params: dict[str, Any], *, required: bool = True) -> str | None:
    raw = get_str(params, "currency", required=required)
    if raw is None:
        return None
    if not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise invalid(f"Invalid currency: {raw.lower()}.", param="currency")
    return raw.lower()


def get_metadata(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid object", param="metadata")
    if len(raw) > 50:
        raise invalid("Metadata can have up to 50 keys.", param="metadata")
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", param=f"metadata[{key}]")
        if len(key) > 40:
            raise invalid(f"Metadata keys can be at most 40 characters long: {key}", param="metadata")
        if len(value) > 500:
            raise invalid("Metadata values can have up to 500 characters.", param=f"metadata[{key}]")
        if value != "":  # Stripe: an empty value unsets the key
            metadata[key] = value
    return metadata


def page_params(params: dict[str, Any]) -> tuple[int, str | None, str | None]:
    limit = get_int(params, "limit") or 10
    if limit > 100:
        raise invalid("Invalid limit: must be between 1 and 100", param="limit")
    return limit, get_str(params, "starting_after"), get_str(params, "ending_before")


# --- the account ---------------------------------------------------------------------------------------


class Store:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.clock_offset = 0
        self.objects: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {}  # object kind -> ids, oldest first
        self.txn_account: dict[str, str] = {}  # balance transaction -> PLATFORM or acct_...
        self.charge_refunds: dict[str, list[str]] = {}
        self.transfer_reversals: dict[str, list[str]] = {}
        self.pending_next: dict[str, int] = {}  # charge -> how many of its next refunds stay pending
        self.new_events: list[dict[str, Any]] = []  # emitted since the server last drained them
        self.webhooks_enabled = False

    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def _put(self, obj: dict[str, Any]) -> None:
        self.objects[obj["id"]] = obj
        self.order.setdefault(obj["object"], []).append(obj["id"])

    def _get(self, kind: str, object_id: str, *, param: str | None = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise no_such(kind, object_id, param=param)
        return obj

    # rendering: a deep copy with nested lists filled in, then `expand[]`

    def render(self, object_id: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.objects[object_id])
        if obj["object"] == "charge":
            obj["refunds"] = self._list(self.charge_refunds.get(object_id, []), f"/v1/charges/{object_id}/refunds")
        elif obj["object"] == "transfer":
            reversals = self.transfer_reversals.get(object_id, [])
            obj["reversals"] = self._list(reversals, f"/v1/transfers/{object_id}/reversals")
        return obj

    def _list(self, ids: list[str], url: str, limit: int = 10) -> dict[str, Any]:
        newest_first = list(reversed(ids))
        return {
            "object": "list",
            "data": [self.render(i) for i in newest_first[:limit]],
            "has_more": len(newest_first) > limit,
            "url": url,
        }

    def output(self, value: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        for path in expand:
            self._expand(value, path.split("."), path)
        return value

    def _expand(self, node: Any, segments: list[str], path: str) -> Any:
        if not segments or node is None:
            return node
        if not isinstance(node, dict):
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        head, rest = segments[0], segments[1:]
        if node.get("object") == "list" and head == "data":
            node["data"] = [self._expand(item, rest, path) for item in node["data"]]
            return node
        if head not in node:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            value = self.render(value)
        node[head] = self._expand(value, rest, path)
        return node

    def paginate(
        self, ids: list[str], params: dict[str, Any], url: str, kind: str, expand: list[str]
    ) -> dict[str, Any]:
        limit, starting_after, ending_before = page_params(params)
        newest_first = list(reversed(ids))
        if starting_after:
            if starting_after not in newest_first:
                raise no_such(kind, starting_after, param="starting_after")
            window = newest_first[newest_first.index(starting_after) + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif ending_before:
            if ending_before not in newest_first:
                raise no_such(kind, ending_before, param="ending_before")
            window = newest_first[: newest_first.index(ending_before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = newest_first[:limit], len(newest_first) > limit
        listed = {"object": "list", "data": [self.render(i) for i in page], "has_more": has_more, "url": url}
        return self.output(listed, expand)

    # balance

    def _txn(
        self,
        *,
        account: str,
        amount: int,
        currency: str,
        type: str,
        category: str,
        source: str,
        description: str | None = None,
    ) -> str:
        now = self.now()
        txn = fixture("balance_transaction")
        txn.update(
            id=new_id("txn"),
            amount=amount,
            available_on=now,
            created=now,
            currency=currency,
            description=description,
            exchange_rate=None,
            fee=0,
            fee_details=[],
            net=amount,
            reporting_category=category,
            source=source,
            status="available",
            type=type,
            balance_type="payments",
        )
        self._put(txn)
        self.txn_account[txn["id"]] = account
        return str(txn["id"])

    def available(self, account: str, currency: str) -> int:
        return sum(
            self.objects[t]["net"]
            for t, owner in self.txn_account.items()
            if owner == account and self.objects[t]["currency"] == currency
        )

    def balance(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(params, set())
        account = ctx.stripe_account or PLATFORM
        currencies = sorted({self.objects[t]["currency"] for t, o in self.txn_account.items() if o == account})
        balance = fixture("balance")
        balance["available"] = [
            {"amount": (a := self.available(account, c)), "currency": c, "source_types": {"card": a}}
            for c in currencies or ["usd"]
        ]
        balance["pending"] = [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies or ["usd"]]
        balance["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies or ["usd"]]
        balance["livemode"] = False
        return self.output(balance, expand)

    def list_balance_transactions(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(
            params, {"created", "currency", "limit", "starting_after", "ending_before", "type", "source", "payout"}
        )
        account = ctx.stripe_account or PLATFORM
        ids = [t for t in self.order.get("balance_transaction", []) if self.txn_account[t] == account]
        created = params.get("created")
        if isinstance(created, str):
            created = {"eq": created}
        if created is not None:
            if not isinstance(created, dict):
                raise invalid("Invalid created", param="created")
            for op, raw in created.items():
                if op not in {"gt", "gte", "lt", "lte", "eq"}:
                    raise unknown_param(f"created[{op}]")
                bound = get_int({"v": raw}, "v", minimum=0)
                ids = [t for t in ids if _compare(self.objects[t]["created"], op, bound)]
        for name in ("type", "source", "currency"):
            wanted = get_str(params, name)
            if wanted is not None:
                ids = [t for t in ids if self.objects[t][name] == wanted.lower() or self.objects[t][name] == wanted]
        return self.paginate(ids, params, "/v1/balance_transactions", "balance_transaction", expand)

    def retrieve_balance_transaction(self, ctx: Context, params: dict[str, Any], txn_id: str) -> dict[str, Any]:
        expand = check_params(params, set())
        txn = self._get("balance_transaction", txn_id)
        if self.txn_account[txn_id] != (ctx.stripe_account or PLATFORM):
            raise no_such("balance_transaction", txn_id)
        return self.output(self.render(txn["id"]), expand)

    # charges and payment intents (test setup)

    def create_charge(self, ctx: Context, params: dict[str, Any], *, charge_id: str | None = None) -> dict[str, Any]:
        """A succeeded card charge (``charge_id`` is for seeding through /_control/charges only)."""
        expand = check_params(
            params,
            {
                "amount",
                "currency",
                "transfer_group",
                "payment_intent",
                "description",
                "metadata",
                "source",
                "customer",
                "receipt_email",
                "statement_descriptor",
            },
        )
        amount = get_int(params, "amount", required=True)
        currency = get_currency(params)
        assert amount is not None
        assert currency is not None
        metadata = get_metadata(params)
        description = get_str(params, "description")
        pi_id = get_str(params, "payment_intent") or new_id("pi")
        if pi_id in self.objects:
            raise invalid(
                f"A payment_intent with id {pi_id} already exists.",
                param="payment_intent",
                code="resource_already_exists",
            )
        now, charge_id, pm_id = self.now(), charge_id or new_id("ch"), new_id("pm")
        txn_id = self._txn(
            account=PLATFORM,
            amount=amount,
            currency=currency,
            type="charge",
            category="charge",
            source=charge_id,
            description=description,
        )
        charge = fixture("charge")
        charge.update(
            id=charge_id,
            amount=amount,
            amount_captured=amount,
            amount_refunded=0,
            balance_transaction=txn_id,
            calculated_statement_descriptor=get_str(params, "statement_descriptor"),
            captured=True,
            created=now,
            currency=currency,
            customer=get_str(params, "customer"),
            description=description,
            livemode=False,
            metadata=metadata,
            on_behalf_of=None,
            outcome={
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            paid=True,
            payment_intent=pi_id,
            payment_method=pm_id,
            receipt_email=get_str(params, "receipt_email"),
            receipt_url=f"https://pay.stripe.com/receipts/payment/{charge_id}",
            refunded=False,
            shipping=None,
            source=None,
            status="succeeded",
            transfer_data=None,
            transfer_group=get_str(params, "transfer_group"),
        )
        charge["payment_method_details"]["card"]["overcapture"]["maximum_amount_capturable"] = amount
        self._put(charge)
        self.charge_refunds[charge_id] = []
        pi = fixture("payment_intent")
        pi.update(
            id=pi_id,
            amount=amount,
            amount_capturable=0,
            amount_details={"tip": {}},
            amount_received=amount,
            automatic_payment_methods=None,
            canceled_at=None,
            cancellation_reason=None,
            client_secret=f"{pi_id}_secret_{new_id('x')[2:]}",
            created=now,
            currency=currency,
            customer=charge["customer"],
            description=description,
            last_payment_error=None,
            latest_charge=charge_id,
            livemode=False,
            metadata=metadata,
            next_action=None,
            payment_method=pm_id,
            payment_method_configuration_details=None,
            payment_method_types=["card"],
            processing=None,
            shipping=None,
            status="succeeded",
            transfer_data=None,
            transfer_group=charge["transfer_group"],
        )
        self._put(pi)
        return self.output(self.render(charge_id), expand)

    def retrieve_charge(self, ctx: Context, params: dict[str, Any], charge_id: str) -> dict[str, Any]:
        expand = check_params(params, set())
        return self.output(self.render(self._get("charge", charge_id)["id"]), expand)

    def retrieve_payment_intent(self, ctx: Context, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        expand = check_params(params, {"client_secret"})
        return self.output(self.render(self._get("payment_intent", pi_id)["id"]), expand)

    # refunds

    def create_refund(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(
            params,
            {
                "charge",
                "payment_intent",
                "amount",
                "reason",
                "metadata",
                "instructions_email",
                "refund_application_fee",
                "reverse_transfer",
            },
        )
        charge_id = get_str(params, "charge")
        pi_id = get_str(params, "payment_intent")
        amount = get_int(params, "amount")
        reason = get_str(params, "reason")
        metadata = get_metadata(params)
        if reason is not None and reason not in REFUND_REASONS:
            raise invalid(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer", param="reason"
            )
        if charge_id is None and pi_id is None:
            raise invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if pi_id is not None:
            pi = self._get("payment_intent", pi_id, param="payment_intent")
            if pi["latest_charge"] is None:
                raise StripeError(
                    400,
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    code="charge_not_refundable",
                    param="payment_intent",
                )
            if charge_id is not None and charge_id != pi["latest_charge"]:
                raise invalid(f"The charge {charge_id} does not belong to the PaymentIntent {pi_id}.", param="charge")
            charge_id = pi["latest_charge"]
        assert charge_id is not None
        charge = self._get("charge", charge_id, param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(400, f"Charge {charge_id} has already been refunded.", code="charge_already_refunded")
        if amount is None:
            amount = remaining
        if amount > remaining:
            currency = charge["currency"]
            what = (
                f"unrefunded amount on charge ({money(remaining, currency)})"
                if charge["amount_refunded"]
                else f"charge amount ({money(charge['amount'], currency)})"
            )
            raise StripeError(
                400,
                f"Refund amount ({money(amount, currency)}) is greater than {what}",
                code="amount_too_large",
                param="amount",
            )
        return self.output(self._apply_refund(ctx, charge, amount, reason, metadata), expand)

    def _apply_refund(
        self, ctx: Context, charge: dict[str, Any], amount: int, reason: str | None, metadata: dict[str, str]
    ) -> dict[str, Any]:
        refund_id = new_id("re")
        pending = self.pending_next.get(charge["id"], 0) > 0
        if pending:
            self.pending_next[charge["id"]] -= 1
        txn_id = self._txn(
            account=PLATFORM,
            amount=-amount,
            currency=charge["currency"],
            type="refund",
            category="refund",
            source=refund_id,
        )
        refund = fixture("refund")
        refund.update(
            id=refund_id,
            amount=amount,
            balance_transaction=txn_id,
            charge=charge["id"],
            created=self.now(),
            currency=charge["currency"],
            destination_details={
                "card": {
                    "reference": None if pending else secrets.token_hex(8),
                    "reference_status": "pending" if pending else "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            metadata=metadata,
            payment_intent=charge["payment_intent"],
            reason=reason,
            receipt_number=None,
            source_transfer_reversal=None,
            status="pending" if pending else "succeeded",
            transfer_reversal=None,
            customer=charge["customer"],
            payment_method=charge["payment_method"],
        )
        self._put(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        self.charge_refunds[charge["id"]].append(refund_id)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.emit("refund.created", refund_id, ctx)
        self.emit("charge.refunded", charge["id"], ctx, previous)
        return self.render(refund_id)

    def retrieve_refund(self, ctx: Context, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
        expand = check_params(params, set())
        return self.output(self.render(self._get("refund", refund_id)["id"]), expand)

    def update_refund(self, ctx: Context, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
        expand = check_params(params, {"metadata"})
        refund = self._get("refund", refund_id)
        if "metadata" in params:
            raw = params["metadata"]
            merged = {} if raw == "" else {**refund["metadata"], **(raw if isinstance(raw, dict) else {})}
            refund["metadata"] = get_metadata({"metadata": merged})
        return self.output(self.render(refund_id), expand)

    def list_refunds(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(
            params, {"charge", "payment_intent", "created", "limit", "starting_after", "ending_before"}
        )
        ids = self.order.get("refund", [])
        charge_id, pi_id = get_str(params, "charge"), get_str(params, "payment_intent")
        if charge_id is not None:
            ids = [r for r in ids if self.objects[r]["charge"] == charge_id]
        if pi_id is not None:
            ids = [r for r in ids if self.objects[r]["payment_intent"] == pi_id]
        return self.paginate(ids, params, "/v1/refunds", "refund", expand)

    def settle_refund(self, ctx: Context, refund_id: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        """Test control: a pending refund ends ``succeeded`` or ``failed`` (its money comes back)."""
        refund = self._get("refund", refund_id)
        if refund["status"] != "pending":
            raise invalid(f"Refund {refund_id} is {refund['status']}, not pending.", param="refund")
        if status not in {"succeeded", "failed"}:
            raise invalid("status must be succeeded or failed", param="status")
        failure_reason = failure_reason or "expired_or_canceled_card"
        if status == "failed" and failure_reason not in REFUND_FAILURE_REASONS:
            raise invalid(f"failure_reason must be one of {', '.join(REFUND_FAILURE_REASONS)}", param="failure_reason")
        previous: dict[str, Any] = {"status": "pending"}
        refund["status"] = status
        if status == "succeeded":
            refund["destination_details"]["card"].update(reference=secrets.token_hex(8), reference_status="available")
        else:
            charge = self.objects[refund["charge"]]
            refund["failure_reason"] = failure_reason
            refund["failure_balance_transaction"] = self._txn(
                account=PLATFORM,
                amount=refund["amount"],
                currency=refund["currency"],
                type="refund_failure",
                category="refund_failure",
                source=refund_id,
            )
            refund["destination_details"]["card"]["reference_status"] = "unavailable"
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.emit("refund.updated", refund_id, ctx, previous)
        self.emit("charge.refund.updated", refund_id, ctx, previous)
        if status == "failed":
            self.emit("refund.failed", refund_id, ctx, previous)
        return self.render(refund_id)

    def refunds_total(self, charge_id: str) -> dict[str, Any]:
        charge = self._get("charge", charge_id, param="charge")
        refunds = [self.objects[r] for r in self.charge_refunds[charge_id]]

        def total(status: str) -> int:
            return sum(r["amount"] for r in refunds if r["status"] == status)

        return {
            "charge": charge_id,
            "currency": charge["currency"],
            "amount": charge["amount"],
            "amount_refunded": charge["amount_refunded"],
            "succeeded": total("succeeded"),
            "pending": total("pending"),
            "failed": total("failed"),
            "refunds": len(refunds),
        }

    # transfers and reversals (Connect)

    def create_transfer(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(
            params,
            {"amount", "currency", "destination", "transfer_group", "source_transaction", "description", "metadata"},
        )
        amount = get_int(params, "amount", required=True)
        currency = get_currency(params)
        destination = get_str(params, "destination", required=True)
        assert amount is not None
        assert currency is not None
        assert destination is not None
        metadata = get_metadata(params)
        if not ACCOUNT_ID.match(destination):
            raise StripeError(
                400, f"No such destination: '{destination}'", code="resource_missing", param="destination"
            )
        source_id = get_str(params, "source_transaction")
        if source_id is not None:
            source = self._get("charge", source_id, param="source_transaction")
            if source["currency"] != currency:
                raise invalid(
                    f"The currency of source_transaction's balance transaction ({source['currency']}) must be the "
                    f"same as the transfer currency ({currency})",
                    param="currency",
                )
            already = sum(
                t["amount"]
                for t in (self.objects[i] for i in self.order.get("transfer", []))
                if t["source_transaction"] == source_id
            )
            if already + amount > source["amount"]:
                raise StripeError(
                    400,
                    f"The transfer amount ({money(amount, currency)}) exceeds what is left to transfer from "
                    f"{source_id} ({money(source['amount'] - already, currency)}).",
                    code="balance_insufficient",
                    param="amount",
                )
        elif self.available(PLATFORM, currency) < amount:
            raise StripeError(
                400,
                "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
                "available balance by creating Charges using the 4000000000000077 test card. See: "
                "https://stripe.com/docs/testing#available-balance",
                code="balance_insufficient",
            )
        transfer_id, payment_id = new_id("tr"), new_id("py")
        txn_id = self._txn(
            account=PLATFORM,
            amount=-amount,
            currency=currency,
            type="transfer",
            category="transfer",
            source=transfer_id,
        )
        self._txn(
            account=destination, amount=amount, currency=currency, type="payment", category="charge", source=payment_id
        )
        transfer = fixture("transfer")
        transfer.update(
            id=transfer_id,
            amount=amount,
            amount_reversed=0,
            balance_transaction=txn_id,
            created=self.now(),
            currency=currency,
            description=get_str(params, "description"),
            destination=destination,
            destination_payment=payment_id,
            livemode=False,
            metadata=metadata,
            reversed=False,
            source_transaction=source_id,
            source_type="card",
            transfer_group=get_str(params, "transfer_group"),
        )
        self._put(transfer)
        self.transfer_reversals[transfer_id] = []
        return self.output(self.render(transfer_id), expand)

    def retrieve_transfer(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        expand = check_params(params, set())
        return self.output(self.render(self._get("transfer", transfer_id)["id"]), expand)

    def list_transfers(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(
            params, {"destination", "transfer_group", "created", "limit", "starting_after", "ending_before"}
        )
        ids = self.order.get("transfer", [])
        for name in ("destination", "transfer_group"):
            wanted = get_str(params, name)
            if wanted is not None:
                ids = [t for t in ids if self.objects[t][name] == wanted]
        return self.paginate(ids, params, "/v1/transfers", "transfer", expand)

    def create_reversal(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        expand = check_params(params, {"amount", "metadata", "description", "refund_application_fee"})
        transfer = self._get("transfer", transfer_id)
        amount = get_int(params, "amount")
        metadata = get_metadata(params)
        currency = transfer["currency"]
        left = transfer["amount"] - transfer["amount_reversed"]
        if amount is None:
            amount = left
        if amount <= 0 or amount > left:
            raise StripeError(
                400,
                f"Insufficient funds on transfer {transfer_id}: {money(left, currency)} is left to reverse, "
                f"{money(amount, currency)} was requested.",
                code="insufficient_funds",
                param="amount",
            )
        destination = transfer["destination"]
        held = self.available(destination, currency)
        if held < amount:
            raise StripeError(
                400,
                f"Insufficient funds in the destination account {destination} ({money(held, currency)} available) "
                f"to reverse {money(amount, currency)} of transfer {transfer_id}.",
                code="insufficient_funds",
                param="amount",
            )
        reversal_id, payment_refund_id = new_id("trr"), new_id("pyr")
        txn_id = self._txn(
            account=PLATFORM,
            amount=amount,
            currency=currency,
            type="transfer_refund",
            category="transfer_reversal",
            source=reversal_id,
        )
        self._txn(
            account=destination,
            amount=-amount,
            currency=currency,
            type="payment_refund",
            category="refund",
            source=payment_refund_id,
        )
        reversal = fixture("transfer_reversal")
        reversal.update(
            id=reversal_id,
            amount=amount,
            balance_transaction=txn_id,
            created=self.now(),
            currency=currency,
            destination_payment_refund=payment_refund_id,
            metadata=metadata,
            source_refund=None,
            transfer=transfer_id,
        )
        self._put(reversal)
        self.transfer_reversals[transfer_id].append(reversal_id)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        return self.output(self.render(reversal_id), expand)

    def retrieve_reversal(
        self, ctx: Context, params: dict[str, Any], transfer_id: str, reversal_id: str
    ) -> dict[str, Any]:
        expand = check_params(params, set())
        self._get("transfer", transfer_id)
        reversal = self._get("transfer_reversal", reversal_id)
        if reversal["transfer"] != transfer_id:
            raise no_such("transfer_reversal", reversal_id)
        return self.output(self.render(reversal_id), expand)

    def list_reversals(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        expand = check_params(params, {"limit", "starting_after", "ending_before"})
        self._get("transfer", transfer_id)
        ids = self.transfer_reversals[transfer_id]
        return self.paginate(ids, params, f"/v1/transfers/{transfer_id}/reversals", "transfer_reversal", expand)

    # events

    def emit(self, type: str, object_id: str, ctx: Context, previous: dict[str, Any] | None = None) -> None:
        event = fixture("event")
        data: dict[str, Any] = {"object": self.render(object_id)}
        if previous is not None:  # *.updated events, and charge.refunded (Stripe sends it there too)
            data["previous_attributes"] = previous
        event.update(
            id=new_id("evt"),
            api_version=API_VERSION,
            created=self.now(),
            data=data,
            livemode=False,
            pending_webhooks=1 if self.webhooks_enabled else 0,
            request={"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            type=type,
        )
        self._put(event)
        self.new_events.append(copy.deepcopy(event))

    def retrieve_event(self, ctx: Context, params: dict[str, Any], event_id: str) -> dict[str, Any]:
        expand = check_params(params, set())
        return self.output(self.render(self._get("event", event_id)["id"]), expand)

    def list_events(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        expand = check_params(params, {"type", "created", "limit", "starting_after", "ending_before"})
        ids = self.order.get("event", [])
        wanted = get_str(params, "type")
        if wanted is not None:
            ids = [e for e in ids if self.objects[e]["type"] == wanted]
        return self.paginate(ids, params, "/v1/events", "event", expand)

    # test controls

    def top_up(self, amount: int, currency: str) -> dict[str, Any]:
        txn_id = self._txn(
            account=PLATFORM, amount=amount, currency=currency, type="topup", category="topup", source=new_id("tu")
        )
        return self.render(txn_id)


def _compare(value: int, op: str, bound: int | None) -> bool:
    assert bound is not None
    return {
        "gt": value > bound,
        "gte": value >= bound,
        "lt": value < bound,
        "lte": value <= bound,
        "eq": value == bound,
    }[op]
