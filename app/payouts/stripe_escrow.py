"""The Stripe adapter of the payment gateway (app/payouts/gateway.py): the only module that imports ``stripe``.

Separate charges and transfers (Stripe Connect): buyers pay the marketplace's balance; refunds go back
on the charge (or its payment intent); money already transferred to a shop comes back by a transfer
reversal. ``SAV_STRIPE_API_BASE`` points the SDK at another Stripe-compatible server (the local one in
tests and the demo).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import msgspec
import stripe

from app.errors import split_msgspec_message
from app.money import MAX_AMOUNT
from app.payouts.gateway import (
    BalanceTransactionPage,
    InvalidSignature,
    PaymentProviderError,
    ProviderBalanceTransaction,
    ProviderEvent,
    ProviderRefund,
    ProviderReversal,
    ProviderTransfer,
    UnreadableEvent,
)

# Our own retries (worker backoff) decide when to try again; the SDK retries once on network errors,
# with the same idempotency key, which is safe.
NETWORK_RETRIES = 1
# Requests in flight at once from one process. The SDK's httpx pool keeps 20 connections alive and, for
# every request, checks each open connection (``has_expired``: a getpeername and a poll per connection):
# fifty transfers at once (a worker pass) spent a tenth of the worker's CPU there and closed the
# connections past 20 after each pass (bench/release.py). Eight keeps them all alive and cheap to scan.
MAX_IN_FLIGHT = 8


class StripeEscrow:
    def __init__(self, *, api_key: str, api_base: str = "", max_in_flight: int = MAX_IN_FLIGHT) -> None:
        options: dict[str, Any] = {"http_client": stripe.HTTPXClient(), "max_network_retries": NETWORK_RETRIES}
        if api_base:
            options["base_addresses"] = {"api": api_base.rstrip("/")}
        self.client = stripe.StripeClient(api_key, **options)
        self.max_in_flight = max_in_flight
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    @property
    def in_flight(self) -> asyncio.Semaphore:
        """The slots of the running event loop (a semaphore waits on one loop only; tests run several)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_in_flight))
        return self._slots[1]

    async def refund(
        self,
        *,
        charge_id: str,
        payment_intent_id: str | None,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ProviderRefund:
        params: dict[str, Any] = {"amount": amount, "reason": "requested_by_customer", "metadata": metadata}
        if charge_id:
            params["charge"] = charge_id
        elif payment_intent_id:
            params["payment_intent"] = payment_intent_id
        try:
            async with self.in_flight:
                refund = await self.client.v1.refunds.create_async(
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": idempotency_key},
                )
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc
        return _refund(refund)

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        try:
            async with self.in_flight:
                return _refund(await self.client.v1.refunds.retrieve_async(refund_id))
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc

    async def transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        source_transaction: str | None,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ProviderTransfer:
        """Escrow released to a shop's connected account. ``source_transaction`` ties it to the buyer's
        charge, so Stripe makes it as soon as that charge's funds are there (not from other balance)."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": metadata,
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        try:
            async with self.in_flight:
                transfer = await self.client.v1.transfers.create_async(
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": idempotency_key},
                )
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc
        return _transfer(transfer)

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ProviderReversal:
        try:
            async with self.in_flight:
                reversal = await self.client.v1.transfers.reversals.create_async(
                    transfer_id,
                    params={"amount": amount, "metadata": metadata},
                    options={"idempotency_key": idempotency_key},
                )
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc
        return ProviderReversal(id=reversal.id, amount=reversal.amount, currency=reversal.currency.upper())

    async def retrieve_transfer(self, transfer_id: str) -> ProviderTransfer:
        try:
            async with self.in_flight:
                transfer = await self.client.v1.transfers.retrieve_async(transfer_id)
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc
        return _transfer(transfer)

    async def list_balance_transactions(
        self, *, created_from: int, created_to: int, starting_after: str | None = None, limit: int = 100
    ) -> BalanceTransactionPage:
        """One page, newest first, of the balance transactions created in [created_from, created_to]."""
        params: dict[str, Any] = {"created": {"gte": created_from, "lte": created_to}, "limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        try:
            async with self.in_flight:
                page = await self.client.v1.balance_transactions.list_async(params=params)  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            raise _escrow_error(exc) from exc
        items = [
            ProviderBalanceTransaction(
                id=t.id,
                type=t.type,
                amount=t.amount,
                fee=t.fee,
                net=t.net,
                currency=t.currency.upper(),
                source=t.source if isinstance(t.source, str) or t.source is None else getattr(t.source, "id", None),
                created=t.created,
            )
            for t in page.data
        ]
        return BalanceTransactionPage(items=items, has_more=page.has_more)


def _refund(refund: Any) -> ProviderRefund:
    return ProviderRefund(
        id=refund.id,
        status=refund.status or "pending",
        amount=refund.amount,
        currency=str(refund.currency).upper(),
        failure_reason=getattr(refund, "failure_reason", None),
    )


def _escrow_error(exc: stripe.StripeError) -> PaymentProviderError:
    transient = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        exc.http_status is not None and exc.http_status >= 500
    )
    return PaymentProviderError(exc.user_message or str(exc), code=exc.code, transient=transient)


REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
CHARGE_REFUNDED = "charge.refunded"

# The shapes of what we read from an event, checked like any request body (strict types, bounds). Stripe
# adds fields over time: unknown fields are ignored, missing or mistyped ones we use are not.
ProviderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{1,255}$")]
OUR_REFUND_ID = re.compile(r"^rfd_[0-9a-f]{32}$")


class _Envelope(msgspec.Struct):
    id: ProviderId
    type: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.]{1,64}$")]
    data: Any = None  # read only for the events we act on


class _Refund(msgspec.Struct):
    id: ProviderId
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$")]
    status: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")] | None = None
    charge: ProviderId | None = None
    failure_reason: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,100}$")] | None = None
    metadata: dict[str, Any] | None = None


class _RefundData(msgspec.Struct):
    object: _Refund


class _RefundList(msgspec.Struct):
    data: list[_Refund]


class _Charge(msgspec.Struct):
    id: ProviderId
    # Absent on API versions that no longer embed refunds: then the refund's own events carry it.
    refunds: _RefundList | None = None


class _ChargeData(msgspec.Struct):
    object: _Charge


def parse_webhook(payload: bytes, signature: str | None, secret: str) -> ProviderEvent:
    """Verify ``Stripe-Signature`` (HMAC and a 5-minute timestamp tolerance) with the SDK, then read what
    we use: refund events carry the refund; ``charge.refunded`` carries the charge's newest refund.

    Raises ``InvalidSignature`` or ``UnreadableEvent`` (400). A signed event whose content does not have
    the documented shape comes back with ``malformed`` set, to be kept and rejected."""
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise InvalidSignature(str(exc).split("\n")[0]) from None
    try:
        envelope = msgspec.convert(msgspec.json.decode(payload), _Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise UnreadableEvent(str(exc)) from None
    if envelope.type not in REFUND_EVENTS and envelope.type != CHARGE_REFUNDED:
        return ProviderEvent(id=envelope.id, type=envelope.type, refund=None, charge_id=None, our_refund_id=None)
    refund: _Refund | None
    try:
        if envelope.type in REFUND_EVENTS:
            refund = msgspec.convert(envelope.data, _RefundData).object
            charge_id = refund.charge
        else:
            charge = msgspec.convert(envelope.data, _ChargeData).object
            charge_id = charge.id
            refund = charge.refunds.data[0] if charge.refunds is not None and charge.refunds.data else None
    except (msgspec.ValidationError, RecursionError) as exc:
        path, message = split_msgspec_message(str(exc))
        return _malformed(envelope, f"data.{path}: {message}" if path else f"data: {message}")
    if refund is not None and refund.charge not in (None, charge_id):
        return _malformed(envelope, f"data.object.refunds.data[0].charge: {refund.charge} is not this charge")
    if refund is None:
        return ProviderEvent(id=envelope.id, type=envelope.type, refund=None, charge_id=charge_id, our_refund_id=None)
    ours = (refund.metadata or {}).get("refund_id")
    return ProviderEvent(
        id=envelope.id,
        type=envelope.type,
        refund=ProviderRefund(
            id=refund.id,
            status=refund.status or "pending",
            amount=refund.amount,
            currency=refund.currency.upper(),
            failure_reason=refund.failure_reason,
        ),
        charge_id=charge_id,
        # Only an id we could have made: anything else in the metadata is someone else's.
        our_refund_id=ours if isinstance(ours, str) and OUR_REFUND_ID.match(ours) else None,
    )


def _malformed(envelope: _Envelope, detail: str) -> ProviderEvent:
    return ProviderEvent(
        id=envelope.id, type=envelope.type, refund=None, charge_id=None, our_refund_id=None, malformed=detail
    )


def _transfer(transfer: Any) -> ProviderTransfer:
    destination = transfer.destination
    return ProviderTransfer(
        id=transfer.id,
        amount=transfer.amount,
        amount_reversed=transfer.amount_reversed,
        currency=transfer.currency.upper(),
        destination=destination if isinstance(destination, str) else getattr(destination, "id", ""),
        transfer_group=transfer.transfer_group,
    )
