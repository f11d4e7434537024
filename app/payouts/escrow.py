"""The escrow gateway port: the money movements we ask the payment provider to make.

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


class EscrowError(Exception):
    """The provider refused or could not be reached. ``transient`` errors are worth retrying with the same
    idempotency key (network, 5xx, rate limits); the others will fail the same way again."""

    def __init__(self, message: str, *, code: str | None, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class EscrowGateway(Protocol):
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

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ProviderReversal: ...


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A provider webhook event, verified and reduced to what we act on."""

    id: str
    type: str
    refund: ProviderRefund | None
    charge_id: str | None
    our_refund_id: str | None  # from the metadata we put on refunds we made


class InvalidSignature(Exception):
    """A webhook whose signature or timestamp does not verify: answered 400, never applied."""
