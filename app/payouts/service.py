"""Money views other domains need: what an order captured, refunded and can still refund."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.payouts import ledger
from app.payouts.ledger import Account, Entry, TransactionKind


@dataclass(frozen=True, slots=True)
class OrderMoney:
    captured: int
    refunded: int

    @property
    def refundable(self) -> int:
        return max(self.captured - self.refunded, 0)


async def record_capture(
    session: AsyncSession,
    *,
    order_id: str,
    currency: str,
    total: int,
    previous: tuple[str, int] | None,
    revision: int,
) -> None:
    """Post the buyer's payment into escrow, or adjust it when the marketplace corrects the order.

    ``previous`` is the (currency, total) captured before this push, None on the first push.
    """
    entries: list[Entry] = []
    if previous is not None:
        old_currency, old_total = previous
        if (old_currency, old_total) == (currency, total):
            return
        if old_total:
            entries += [
                Entry(Account.PROVIDER_BALANCE, -old_total, old_currency),
                Entry(Account.ESCROW, old_total, old_currency),
            ]
    if total:
        entries += [Entry(Account.PROVIDER_BALANCE, total, currency), Entry(Account.ESCROW, -total, currency)]
    entries = _net(entries)
    if not entries:
        return
    kind = TransactionKind.CAPTURE if previous is None else TransactionKind.CAPTURE_ADJUSTMENT
    await ledger.post(
        session, kind=kind, reference=f"order:{order_id}:capture:{revision}", entries=entries, order_id=order_id
    )


def _net(entries: list[Entry]) -> list[Entry]:
    """Merge entries on the same account and currency (a total change becomes one delta)."""
    sums: dict[tuple[Account, str], int] = {}
    for e in entries:
        sums[(e.account, e.currency)] = sums.get((e.account, e.currency), 0) + e.amount
    return [Entry(account, amount, currency) for (account, currency), amount in sums.items() if amount]


# Compensation granted on an order, whatever its kind: what it took from the shop's escrow and from the
# operator's goodwill (a bonus on top of a credit note or promo code is not counted: it is not the
# buyer's money coming back).
COMPENSATION_KINDS = (
    TransactionKind.REFUND_ISSUED,
    TransactionKind.REFUND_REVERSED,
    TransactionKind.CREDIT_ISSUED,
    TransactionKind.PROMO_ISSUED,
)


async def order_money(session: AsyncSession, *, order_id: str) -> OrderMoney:
    """Captured: what the buyer paid into escrow. Refunded: compensation granted (refunds paid or in flight,
    credit notes, promo codes), minus refunds the provider refused. Both read from the ledger."""
    sums = await ledger.order_balances(session, order_id)
    escrow = Account.ESCROW.value
    captured = -(
        sums.get((escrow, TransactionKind.CAPTURE), 0) + sums.get((escrow, TransactionKind.CAPTURE_ADJUSTMENT), 0)
    )
    refunded = sum(
        sums.get((account.value, kind.value), 0)
        for account in (Account.ESCROW, Account.PLATFORM_GOODWILL)
        for kind in COMPENSATION_KINDS
    )
    return OrderMoney(captured=captured, refunded=refunded)
