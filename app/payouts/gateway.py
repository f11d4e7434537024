"""The payment gateway port: the money movements we ask the payment provider to make.

One real adapter (``stripe_escrow.StripeEscrow``, the only module importing ``stripe``); tests use a fake
that records calls. Every call carries an idempotency key that we derive from our own ids, so a retry
after a timeout or a crash is answered with the first result instead of paying twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    id: str
    status: str  # succeeded, pending, failed, canceled, requires_action
    amount: int
    currency: str
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderReversal:
    id: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class ProviderTransfer:
    """Money moved from the marketplace's balance to a shop's connected account (escrow released)."""

    id: str
    amount: int
    amount_reversed: int
    currency: str
    destination: str
    transfer_group: str | None


@dataclass(frozen=True, slots=True)
class ProviderBalanceTransaction:
    """One movement of the marketplace's provider balance, what finance reconciles the ledger against."""

    id: str
    type: str  # charge, refund, refund_failure, transfer, transfer_refund (a reversal), stripe_fee, ...
    amount: int  # signed, minor units
    fee: int
    net: int
    currency: str
    source: str | None  # the provider object that moved it (ch_, re_, tr_, trr_)
    created: int  # unix seconds


@dataclass(frozen=True, slots=True)
class BalanceTransactionPage:
    items: list[ProviderBalanceTransaction]
    has_more: bool


class PaymentProviderError(Exception):
    """The provider refused or could not be reached; ``code`` is the provider's own (``amount_too_large``,
    ``charge_already_refunded``, ``insufficient_funds``...). ``transient`` errors are worth retrying with the
    same idempotency key (network, 5xx, rate limits); the others will fail the same way again."""

    def __init__(self, message: str, *, code: str | None, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class PaymentGateway(Protocol):
    async def refund(
        self,
        *,
        charge_id: str,
        payment_intent_id: str | None,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ProviderRefund: ...

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund: ...

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
    ) -> ProviderTransfer: ...

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ProviderReversal: ...

    async def retrieve_transfer(self, transfer_id: str) -> ProviderTransfer: ...

    async def list_balance_transactions(
        self, *, created_from: int, created_to: int, starting_after: str | None = None, limit: int = 100
    ) -> BalanceTransactionPage: ...


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A provider webhook event, verified and reduced to what we act on.

    A signed event is still input: ``malformed`` says what in it does not have the shape and types the
    provider documents (a missing object, an amount that is not a positive integer...). Such an event
    is kept, and rejected: it never moves money."""

    id: str
    type: str
    refund: ProviderRefund | None
    charge_id: str | None
    our_refund_id: str | None  # from the metadata we put on refunds we made
    malformed: str | None = None


class InvalidSignature(Exception):
    """A webhook whose signature or timestamp does not verify: answered 400, never applied."""


class UnreadableEvent(Exception):
    """A signed body that is not an event we can even name (not JSON, no usable ``id`` or ``type``):
    answered 400, nothing kept, since there is no event id to keep it under."""
