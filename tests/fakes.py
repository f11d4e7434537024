"""Fakes for ports (not mocks): they keep state like the real thing and can be told to fail."""

from __future__ import annotations

import uuid

from app.payouts.escrow import EscrowError, ProviderRefund, ProviderReversal


class FakeEscrow:
    """An in-memory payment provider with Stripe's idempotency: the same key gets the first answer."""

    def __init__(self) -> None:
        self.refunds: dict[str, ProviderRefund] = {}  # by idempotency key
        self.calls: list[str] = []
        # idempotency key -> errors to raise on its next calls (tests share a database: target one refund)
        self.fail_for: dict[str, list[EscrowError]] = {}
        self.status = "succeeded"

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
        self.calls.append(idempotency_key)
        if self.fail_for.get(idempotency_key):
            raise self.fail_for[idempotency_key].pop(0)
        if idempotency_key not in self.refunds:
            self.refunds[idempotency_key] = ProviderRefund(
                id=f"re_{uuid.uuid4().hex[:16]}", status=self.status, amount=amount, currency=currency
            )
        return self.refunds[idempotency_key]

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return next(r for r in self.refunds.values() if r.id == refund_id)

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ProviderReversal:
        return ProviderReversal(id=f"trr_{uuid.uuid4().hex[:16]}", amount=amount, currency="EUR")

    @property
    def total(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.status == "succeeded")
