"""Fakes for ports (not mocks): they keep state like the real thing and can be told to fail."""

from __future__ import annotations

import asyncio
import uuid

from app.payouts.gateway import (
    BalanceTransactionPage,
    PaymentProviderError,
    ProviderBalanceTransaction,
    ProviderRefund,
    ProviderReversal,
    ProviderTransfer,
)


class FakeEscrow:
    """An in-memory payment provider with Stripe's idempotency: the same key gets the first answer."""

    def __init__(self) -> None:
        self.refunds: dict[str, ProviderRefund] = {}  # by idempotency key
        self.calls: list[str] = []
        # idempotency key -> errors to raise on its next calls (tests share a database: target one refund)
        self.fail_for: dict[str, list[PaymentProviderError]] = {}
        self.status = "succeeded"
        self.transfers: dict[str, ProviderTransfer] = {}  # by idempotency key
        self.transfer_calls: list[str] = []
        self.transfer_sources: dict[str, str | None] = {}  # transfer_group -> source_transaction
        # transfer group (the order id) -> errors to raise on its next transfers (before the key is known)
        self.fail_transfers_of: dict[str, list[PaymentProviderError]] = {}
        self.reversals: dict[str, ProviderReversal] = {}  # by idempotency key
        self.reversal_calls: list[tuple[str, str, int]] = []  # (idempotency key, transfer id, amount)
        # idempotency key -> errors to raise on its next reversals (``insufficient_balance`` on demand)
        self.fail_reversals_for: dict[str, list[PaymentProviderError]] = {}

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
        self.transfer_calls.append(idempotency_key)
        self.transfer_sources[transfer_group] = source_transaction
        await asyncio.sleep(0)  # let concurrent workers interleave here
        if self.fail_transfers_of.get(transfer_group):
            raise self.fail_transfers_of[transfer_group].pop(0)
        if idempotency_key not in self.transfers:
            self.transfers[idempotency_key] = ProviderTransfer(
                id=f"tr_{uuid.uuid4().hex[:16]}",
                amount=amount,
                amount_reversed=0,
                currency=currency,
                destination=destination,
                transfer_group=transfer_group,
            )
        return self.transfers[idempotency_key]

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ProviderReversal:
        self.reversal_calls.append((idempotency_key, transfer_id, amount))
        await asyncio.sleep(0)  # let concurrent workers interleave here
        if self.fail_reversals_for.get(idempotency_key):
            raise self.fail_reversals_for[idempotency_key].pop(0)
        if idempotency_key not in self.reversals:
            self.reversals[idempotency_key] = ProviderReversal(
                id=f"trr_{uuid.uuid4().hex[:16]}", amount=amount, currency="EUR"
            )
        return self.reversals[idempotency_key]

    def refuse_reversal(self, idempotency_key: str) -> None:
        """Stripe's answer when the connected account's balance cannot cover the reversal."""
        self.fail_reversals_for.setdefault(idempotency_key, []).append(
            PaymentProviderError(
                "Insufficient funds in the connected account", code="balance_insufficient", transient=False
            )
        )

    async def retrieve_transfer(self, transfer_id: str) -> ProviderTransfer:
        raise PaymentProviderError(f"No such transfer: '{transfer_id}'", code="resource_missing", transient=False)

    async def list_balance_transactions(
        self, *, created_from: int, created_to: int, starting_after: str | None = None, limit: int = 100
    ) -> BalanceTransactionPage:
        """The refunds made, as the provider's balance would show them (this fake keeps no creation time)."""
        items = [
            ProviderBalanceTransaction(
                id=f"txn_{r.id}",
                type="refund",
                amount=-r.amount,
                fee=0,
                net=-r.amount,
                currency=r.currency,
                source=r.id,
                created=created_from,
            )
            for r in self.refunds.values()
            if r.status == "succeeded"
        ]
        return BalanceTransactionPage(items=items[:limit], has_more=len(items) > limit)

    @property
    def total(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.status == "succeeded")


class FakeBalance:
    """A provider's balance transactions, listed as Stripe does: ``created`` filters (both bounds
    inclusive), newest first, pages of ``limit`` after ``starting_after``. Also a (partial) payment
    gateway: reconciliation only lists."""

    def __init__(self, items: list[ProviderBalanceTransaction]) -> None:
        self.items = items
        self.pages = 0

    async def list_balance_transactions(
        self, *, created_from: int, created_to: int, starting_after: str | None = None, limit: int = 100
    ) -> BalanceTransactionPage:
        self.pages += 1
        found = sorted(
            (t for t in self.items if created_from <= t.created <= created_to), key=lambda t: (-t.created, t.id)
        )
        if starting_after is not None:
            found = found[[t.id for t in found].index(starting_after) + 1 :]
        return BalanceTransactionPage(items=found[:limit], has_more=len(found) > limit)
