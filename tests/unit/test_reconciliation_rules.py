"""Reconciliation's tables against independent ones, and the generated period: read back with the parser and
reconciled in plain Python with the same rules, it gives exactly the breaks the generator says it injected."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from app.ledger.posting import Account, Entry, TransactionKind, check_balanced
from app.reconciliation.currencies import format_minor
from app.reconciliation.parsing import HEADERS, Layout, read_export
from app.reconciliation.rules import (
    LEDGER_CLASSES,
    MIXED_CURRENCIES,
    PROVIDER_CLASSES,
    BreakStatus,
    MatchClass,
    break_status,
    ledger_movement,
    provider_class,
)
from devtools.reconciliation_data import LedgerTx, Period, _formatter, write_period

SPEC = Path(__file__).resolve().parents[2] / "devtools" / "stripe_server" / "spec3_subset.json"

# What the contract books (SPEC §8.2), written out again by hand; every other type is ignored.
BOOKED = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund_failure",
    "payment_failure_refund": "refund_failure",
    "transfer": "transfer",
    "transfer_refund": "transfer_reversal",
    "transfer_cancel": "transfer_reversal",
    "transfer_reversal": "transfer_reversal",
    "transfer_failure": "transfer_failure",
}


def test_every_balance_transaction_type_of_the_api_is_classified() -> None:
    schema = json.loads(SPEC.read_text())["components"]["schemas"]["balance_transaction"]
    types = set(schema["properties"]["type"]["enum"])
    assert types - PROVIDER_CLASSES.keys() == set()


def test_only_the_contracts_types_are_matched_and_the_rest_ignored() -> None:
    assert {t: c for t, c in PROVIDER_CLASSES.items() if c is not None} == BOOKED
    for ignored in ("stripe_fee", "payout", "fee", "dispute", "adjustment", "topup", "a_type_from_2030"):
        assert provider_class(ignored) is None
    assert provider_class(" Charge ") == MatchClass.CHARGE


def test_ledger_kinds_that_are_provider_movements() -> None:
    assert {k.value: c.value for k, c in LEDGER_CLASSES.items()} == {
        "capture": "charge",
        "capture_adjustment": "charge",
        "refund_paid": "refund",
        "refund_reversed": "refund_failure",
        "transfer_paid": "transfer",
        "transfer_reversed": "transfer_reversal",
    }


PB, ESCROW = Account.PROVIDER_BALANCE.value, Account.ESCROW.value


@pytest.mark.parametrize(
    ("kind", "provider_id", "entries", "expected"),
    [
        ("capture", "ch_1", [(PB, 1000, "EUR"), (ESCROW, -1000, "EUR")], (MatchClass.CHARGE, 1000, "EUR")),
        ("capture", None, [(PB, 1000, "EUR"), (ESCROW, -1000, "EUR")], None),
        (
            "refund_paid",
            "re_1",
            [("refunds_in_flight", 300, "EUR"), (PB, -300, "EUR")],
            (MatchClass.REFUND, -300, "EUR"),
        ),
        # a refund refused before it was paid moves nothing at the provider
        ("refund_reversed", "re_1", [("refunds_in_flight", 300, "EUR"), (ESCROW, -300, "EUR")], None),
        # a late failure puts the money back on the provider balance
        ("refund_reversed", "re_1", [(PB, 300, "EUR"), (ESCROW, -300, "EUR")], (MatchClass.REFUND_FAILURE, 300, "EUR")),
        ("release", None, [(ESCROW, 900, "EUR"), ("transfers_in_flight", -900, "EUR")], None),
        ("refund_issued", "re_1", [(PB, 5, "EUR"), (ESCROW, -5, "EUR")], None),  # not a movement kind
        # a capture corrected to another currency: the key's amount cannot match
        (
            "capture_adjustment",
            "ch_1",
            [(PB, -1000, "EUR"), (ESCROW, 1000, "EUR"), (PB, 1200, "USD"), (ESCROW, -1200, "USD")],
            (MatchClass.CHARGE, 200, MIXED_CURRENCIES),
        ),
    ],
)
def test_a_ledger_transaction_is_a_provider_movement_only_with_an_id_and_a_provider_balance_entry(
    kind: str, provider_id: str | None, entries: list[tuple[str, int, str]], expected: object
) -> None:
    assert ledger_movement(kind, provider_id, entries) == expected


def test_break_status_by_comparison() -> None:
    assert break_status((100, "EUR"), (100, "EUR")) == BreakStatus.MATCHED
    assert break_status((100, "EUR"), (101, "EUR")) == BreakStatus.AMOUNT_MISMATCH
    assert break_status((100, "EUR"), (100, "USD")) == BreakStatus.AMOUNT_MISMATCH
    assert break_status((100, MIXED_CURRENCIES), (100, MIXED_CURRENCIES)) == BreakStatus.AMOUNT_MISMATCH
    assert break_status((100, "EUR"), None) == BreakStatus.MISSING_IN_LEDGER
    assert break_status(None, (100, "EUR")) == BreakStatus.MISSING_IN_PROVIDER
    with pytest.raises(ValueError, match="at least one side"):
        break_status(None, None)


# --- the generated period --------------------------------------------------------------------------------


def generate(layout: Layout, *, rows: int = 200, breaks: int = 3, seed: int = 7) -> tuple[str, list[LedgerTx], Period]:
    out, ledger, batches = io.StringIO(newline=""), [], []

    def on_ledger(batch: list[LedgerTx]) -> None:
        batches.append(len(batch))
        ledger.extend(batch)

    period = write_period(out, rows=rows, breaks=breaks, layout=layout, on_ledger=on_ledger, seed=seed, batch_size=50)
    assert max(batches) <= 50  # handed over in batches, never all at once
    return out.getvalue(), ledger, period


def reconcile_in_python(text: str, ledger: list[LedgerTx]) -> tuple[set[tuple[str, str]], dict[str, int], int]:
    """The matching the SQL will do, written plainly: per (provider id, class), each side's sum."""
    provider: dict[tuple[str, str], tuple[int, str]] = {}
    ignored = rows = 0
    for row in read_export(io.StringIO(text, newline="")):
        rows += 1
        match_class = provider_class(row.type)
        if match_class is None or row.source is None:
            ignored += 1
            continue
        amount, currency = provider.get((row.source, match_class), (0, row.currency))
        provider[(row.source, match_class)] = (amount + row.amount, currency)
    booked: dict[tuple[str, str], tuple[int, str]] = {}
    for _tx_id, kind, provider_id, _order, _at, entries in ledger:
        movement = ledger_movement(kind, provider_id, [(a, v, c) for a, v, c, _party in entries])
        if movement is not None and provider_id is not None:
            booked[(provider_id, movement[0])] = (movement[1], movement[2])
    counts: dict[str, int] = defaultdict(int, {BreakStatus.IGNORED.value: ignored})
    found = set()
    for key in provider.keys() | booked.keys():
        status = break_status(provider.get(key), booked.get(key))
        counts[status.value] += 1
        if status != BreakStatus.MATCHED:
            found.add((status.value, key[0]))
    return found, dict(counts), rows


@pytest.mark.parametrize("layout", list(Layout))
def test_the_generated_period_reads_back_and_reconciles_to_exactly_its_injected_breaks(layout: Layout) -> None:
    text, ledger, period = generate(layout)
    found, counts, rows = reconcile_in_python(text, ledger)
    assert rows == period.rows == 200
    assert len(ledger) == period.ledger_transactions
    assert found == period.breaks
    assert {status for status, _ in found} == {"amount_mismatch", "missing_in_ledger", "missing_in_provider"}
    assert counts == period.counts
    assert counts["amount_mismatch"] == counts["missing_in_ledger"] == counts["missing_in_provider"] == 3
    assert counts["ignored"] == 10


def test_the_generated_ledger_is_balanced_and_uses_the_ledgers_names() -> None:
    _, ledger, _ = generate(Layout.DASHBOARD)
    kinds = set()
    for tx_id, kind, provider_id, order_id, at, entries in ledger:
        check_balanced(
            [Entry(Account(account), amount, currency, party) for account, amount, currency, party in entries]
        )
        kinds.add(TransactionKind(kind))
        assert tx_id
        assert provider_id
        assert order_id
        assert at.tzinfo is not None
    assert kinds == set(LEDGER_CLASSES) - {TransactionKind.CAPTURE_ADJUSTMENT}


def test_the_generator_is_deterministic_by_seed_and_writes_quoted_multiline_fields() -> None:
    first, ledger, _ = generate(Layout.ITEMIZED, seed=3)
    again, ledger_again, _ = generate(Layout.ITEMIZED, seed=3)
    other, _, _ = generate(Layout.ITEMIZED, seed=4)
    assert (first, ledger) == (again, ledger_again)
    assert other != first
    assert '"Order 0, ""gift""\nwrapped"' in first


def test_the_generator_refuses_more_breaks_than_bookable_rows() -> None:
    with pytest.raises(ValueError, match="bookable"):
        write_period(io.StringIO(), rows=20, breaks=7, layout="dashboard", on_ledger=lambda batch: None)


@pytest.mark.parametrize("layout", list(Layout))
def test_the_generators_hand_written_lines_are_what_csv_writer_writes(layout: Layout) -> None:
    text, ledger, _ = generate(layout, rows=400, breaks=5, seed=2**40 + 3)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rewritten = io.StringIO(newline="")
    csv.writer(rewritten, lineterminator="\r\n").writerows(rows)
    assert rewritten.getvalue() == text
    assert all(len(row) == len(HEADERS[layout]) for row in rows)
    # Transaction ids are the UUIDs of (seed << 64) | n, without building them.
    assert [tx[0] for tx in ledger[:3]] == [str(uuid.UUID(int=(2**40 + 3) << 64 | n)) for n in (1, 2, 3)]


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD"])
def test_the_generators_amounts_are_format_minor(currency: str) -> None:
    amounts = [*range(-2100, 2100), -(10**12) - 7, 10**12 + 7]
    assert [_formatter(currency)(a) for a in amounts] == [format_minor(a, currency) for a in amounts]
