"""Ledger properties: random sequences of money operations on an order keep every transaction balanced,
every balance equal to the sum of its entries, and refunds within what was captured."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from app.payouts.ledger import Account, Entry, check_balanced
from app.payouts.refunds import issue_entries, late_failure_entries, paid_entries, reversal_entries

# (operation, amount, share of it the seller funds in percent, outcome of the provider)
operations = st.lists(
    st.tuples(
        st.sampled_from(["refund", "recapture"]),
        st.integers(min_value=1, max_value=100_000),
        st.integers(min_value=0, max_value=100),
        st.sampled_from(["paid", "reversed", "pending", "paid_then_failed"]),
    ),
    max_size=40,
)


class Book:
    """An in-memory ledger that applies the service's own entry builders, the way the service does."""

    def __init__(self) -> None:
        self.transactions: list[tuple[str, list[Entry]]] = []
        self.captured = 0

    def post(self, kind: str, entries: list[Entry]) -> None:
        check_balanced(entries)
        self.transactions.append((kind, entries))

    def balance(self, account: Account) -> int:
        return sum(e.amount for _, entries in self.transactions for e in entries if e.account == account)

    def refunded(self) -> int:
        """As app/payouts/service.py derives it: what compensation took from escrow and goodwill."""
        return sum(
            e.amount
            for kind, entries in self.transactions
            if kind in ("issued", "reversed")
            for e in entries
            if e.account in (Account.ESCROW, Account.PLATFORM_GOODWILL)
        )


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=1_000_000), operations)
def test_random_operations_keep_the_ledger_sound(total: int, ops: list[tuple[str, int, int, str]]) -> None:
    book = Book()
    book.post("capture", [Entry(Account.PROVIDER_BALANCE, total, "EUR"), Entry(Account.ESCROW, -total, "EUR")])
    book.captured = total
    in_flight_expected = 0
    for op, amount, seller_percent, outcome in ops:
        if op == "recapture":  # the marketplace corrects the order upward
            book.post(
                "capture", [Entry(Account.PROVIDER_BALANCE, amount, "EUR"), Entry(Account.ESCROW, -amount, "EUR")]
            )
            book.captured += amount
            continue
        refundable = book.captured - book.refunded()
        if amount > refundable:  # the service refuses it (422) and writes nothing
            continue
        seller_part = amount * seller_percent // 100
        issued = issue_entries(seller_part, amount - seller_part, "EUR", "buyer", "shop")
        book.post("issued", issued)
        if outcome == "paid":
            book.post("paid", paid_entries(amount, "EUR"))
        elif outcome == "paid_then_failed":  # Stripe fails it after it succeeded (a closed card)
            paid_out = paid_entries(amount, "EUR")
            book.post("paid", paid_out)
            book.post("reversed", late_failure_entries(issued, paid_out))
        elif outcome == "reversed":
            book.post("reversed", reversal_entries(issued))
        else:
            in_flight_expected += amount

    totals: dict[str, int] = defaultdict(int)
    for _, entries in book.transactions:
        for entry in entries:
            totals[entry.currency] += entry.amount
    assert all(total == 0 for total in totals.values())  # the whole book balances
    assert 0 <= book.refunded() <= book.captured  # never more refunded than captured
    assert -book.balance(Account.REFUNDS_IN_FLIGHT) == in_flight_expected  # owed = issued, not yet paid
    # What left the provider balance is exactly what was paid out and not given back.
    paid = sum(
        -e.amount
        for kind, es in book.transactions
        if kind in ("paid", "reversed")
        for e in es
        if e.account == Account.PROVIDER_BALANCE
    )
    assert book.balance(Account.PROVIDER_BALANCE) == book.captured - paid
    # Escrow still owed to the shop plus the seller-funded refunds equal the capture.
    seller_funded = sum(
        e.amount
        for kind, es in book.transactions
        if kind in ("issued", "reversed")
        for e in es
        if e.account == Account.ESCROW
    )
    assert -book.balance(Account.ESCROW) == book.captured - seller_funded
