from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ledger.posting import Account, Entry, UnbalancedTransaction, check_balanced
from app.ledger.postings import net

amounts = st.integers(min_value=1, max_value=10**12)


@given(st.lists(amounts, min_size=1, max_size=20), st.sampled_from(["EUR", "USD"]))
def test_a_capture_and_its_mirror_always_balance(values: list[int], currency: str) -> None:
    entries = [Entry(Account.PROVIDER_BALANCE, v, currency) for v in values]
    entries.append(Entry(Account.ESCROW, -sum(values), currency))
    check_balanced(entries)


@given(amounts, amounts)
def test_unbalanced_entries_are_refused(debit: int, credit: int) -> None:
    entries = [Entry(Account.PROVIDER_BALANCE, debit, "EUR"), Entry(Account.ESCROW, -credit, "EUR")]
    if debit == credit:
        check_balanced(entries)
    else:
        with pytest.raises(UnbalancedTransaction):
            check_balanced(entries)


def test_balance_is_per_currency() -> None:
    with pytest.raises(UnbalancedTransaction):
        check_balanced([Entry(Account.PROVIDER_BALANCE, 100, "EUR"), Entry(Account.ESCROW, -100, "USD")])


def test_empty_and_zero_entries_are_refused() -> None:
    with pytest.raises(UnbalancedTransaction):
        check_balanced([])
    with pytest.raises(UnbalancedTransaction):
        check_balanced([Entry(Account.ESCROW, 0, "EUR")])


@given(amounts, amounts)
def test_a_total_correction_nets_to_one_balanced_delta(old: int, new: int) -> None:
    entries = net(
        [
            Entry(Account.PROVIDER_BALANCE, -old, "EUR"),
            Entry(Account.ESCROW, old, "EUR"),
            Entry(Account.PROVIDER_BALANCE, new, "EUR"),
            Entry(Account.ESCROW, -new, "EUR"),
        ]
    )
    if old == new:
        assert entries == []
    else:
        assert len(entries) == 2
        check_balanced(entries)
