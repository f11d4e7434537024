"""A period of provider balance transactions as a Stripe CSV export, and the ledger that matches it, with
known breaks: for reconciliation's tests, the demo and the benchmark.

``write_period`` streams N provider rows (charges, refunds, refund failures, transfers, transfer reversals,
and every 20th row one the reconciliation ignores: a Stripe fee or a payout to the platform's bank) into a
text file in either layout, and hands the ledger side to a callback in batches, as plain tuples
``(transaction_id, kind, provider_id, order_id, created_at, [(account, amount, currency, party_id)])``
balanced like the real postings. Nothing of size N is held. Deterministic for a seed.

K breaks of each kind are injected: ``amount_mismatch`` (the ledger booked a different amount),
``missing_in_ledger`` (a provider row with no ledger transaction), ``missing_in_provider`` (a ledger
movement with no provider row: added next to a row, so the file still has exactly N rows). The answer,
``Period.breaks``, is the set of (status, provider_id) a correct reconciliation finds, and
``Period.counts`` its counts (one provider row per key, so every bookable row not broken is one match).

    python -m devtools.reconciliation_data --rows 1000000 --breaks 1000 --layout dashboard --out period.csv \
        [--seed 1] [--ledger ledger.jsonl] [--expected breaks.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from app.ledger.posting import Account, TransactionKind
from app.reconciliation.currencies import format_minor
from app.reconciliation.parsing import HEADERS, Layout
from app.reconciliation.rules import BreakStatus

Entry = tuple[str, int, str, str | None]
LedgerTx = tuple[str, str, str | None, str | None, datetime, list[Entry]]

START = datetime(2026, 11, 1, tzinfo=UTC)
IGNORED_EVERY = 20  # rows i with i % 20 == 19 are a Stripe fee or a payout
# (provider type, reporting category, ledger kind, the id prefix of the provider object, sign at the provider)
MOVEMENTS = {
    "charge": ("charge", "charge", TransactionKind.CAPTURE, "ch", 1),
    "refund": ("refund", "refund", TransactionKind.REFUND_PAID, "re", -1),
    "refund_failure": ("refund_failure", "refund_failure", TransactionKind.REFUND_REVERSED, "re", 1),
    "transfer": ("transfer", "transfer", TransactionKind.TRANSFER_PAID, "tr", -1),
    "transfer_reversal": ("transfer_refund", "transfer_reversal", TransactionKind.TRANSFER_REVERSED, "trr", 1),
}
# What an order goes through, drawn per order: (weight, movements).
STORIES = (
    (60, ("charge", "transfer")),
    (15, ("charge", "refund", "transfer")),
    (10, ("charge",)),
    (8, ("charge", "transfer", "transfer_reversal")),
    (7, ("charge", "refund", "refund_failure", "transfer")),
)
CURRENCIES = (("EUR", 90), ("JPY", 5), ("KWD", 5))


@dataclass
class Period:
    rows: int = 0
    ledger_transactions: int = 0
    breaks: set[tuple[str, str]] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {status.value: 0 for status in BreakStatus})


def ledger_entries(movement: str, amount: int, currency: str, seller: str) -> list[Entry]:
    """Balanced entries of a provider movement of ``amount`` (positive), as app/ledger/postings.py writes them."""
    pb = Account.PROVIDER_BALANCE.value
    if movement == "charge":
        return [(pb, amount, currency, None), (Account.ESCROW.value, -amount, currency, None)]
    if movement == "refund":
        return [(Account.REFUNDS_IN_FLIGHT.value, amount, currency, None), (pb, -amount, currency, None)]
    if movement == "refund_failure":  # a late failure: the payment undone (and the issue, netted here)
        return [(pb, amount, currency, None), (Account.ESCROW.value, -amount, currency, seller)]
    if movement == "transfer":
        return [(Account.TRANSFERS_IN_FLIGHT.value, amount, currency, seller), (pb, -amount, currency, None)]
    return [(pb, amount, currency, None), (Account.SELLER_RECOVERABLE.value, -amount, currency, seller)]


def write_period(
    out: TextIO,
    *,
    rows: int,
    breaks: int,
    layout: Layout | str,
    on_ledger: Callable[[list[LedgerTx]], object],
    seed: int = 1,
    start: datetime = START,
    days: int = 30,
    batch_size: int = 5000,
) -> Period:
    """Write the period's export to ``out`` and pass its ledger to ``on_ledger`` in batches; see the module."""
    layout = Layout(layout)
    rng = random.Random(seed)
    bookable = rows - rows // IGNORED_EVERY
    if 3 * breaks > bookable:
        raise ValueError(f"{3 * breaks} breaks need at least that many bookable rows ({bookable} in {rows})")
    # The j-th bookable row is row j + j // (IGNORED_EVERY - 1): no list of N, only the 3K chosen ones.
    chosen = rng.sample(range(bookable), 3 * breaks)
    kinds = (BreakStatus.AMOUNT_MISMATCH, BreakStatus.MISSING_IN_LEDGER, BreakStatus.MISSING_IN_PROVIDER)
    injected = {j + j // (IGNORED_EVERY - 1): kinds[n // breaks] for n, j in enumerate(chosen)} if breaks else {}
    step = timedelta(days=days) / max(rows, 1)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS[layout])
    period, batch = Period(), []
    weights = [w for w, _ in STORIES]
    story: list[str] = []
    order_n, counter, amount, currency = 0, 0, 0, "EUR"

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return str(uuid.UUID(int=(seed << 64) | counter))

    def book(tx: LedgerTx) -> None:
        batch.append(tx)
        period.ledger_transactions += 1
        if len(batch) >= batch_size:
            on_ledger(batch.copy())
            batch.clear()

    for i in range(rows):
        at = start + step * i
        if i % IGNORED_EVERY == IGNORED_EVERY - 1:
            is_fee = i // IGNORED_EVERY % 2 == 0
            pid = "" if is_fee else f"po_{seed}x{i}"
            gross = -rng.randint(100, 5000) if is_fee else -rng.randint(100_000, 5_000_000)
            _write(writer, layout, f"txn_{seed}x{i}", "stripe_fee" if is_fee else "payout", pid, gross, 0, "EUR", at, i)
            period.counts[BreakStatus.IGNORED] += 1
            period.rows += 1
            continue
        if not story:
            order_n += 1
            story = list(rng.choices([s for _, s in STORIES], weights)[0])
            currency = rng.choices([c for c, _ in CURRENCIES], [w for _, w in CURRENCIES])[0]
            amount = rng.randint(5, 2000) * (1 if currency == "JPY" else 100 if currency == "EUR" else 1000)
            amount += rng.randint(0, 99) if currency != "JPY" else 0
        movement = story.pop(0)
        type_, category, kind, prefix, sign = MOVEMENTS[movement]
        # The shop gets 90 % (the commission stays); a refund, its failure or a reversal is a third of the order.
        part = {"charge": amount, "transfer": amount * 9 // 10}.get(movement, max(1, amount // 3))
        order_id, seller = f"ord_{seed}x{order_n}", f"shop_{order_n % 97}"
        pid = f"{prefix}_{seed}x{order_n}"  # a refund and its failure name the same re_
        fee = part * 14 // 1000 + 25 if movement == "charge" else 0
        _write(writer, layout, f"txn_{seed}x{i}", type_ if layout == Layout.DASHBOARD else category, pid,
               sign * part, fee, currency, at, i)  # fmt: skip
        period.rows += 1
        status = injected.get(i, BreakStatus.MATCHED)
        booked_at = at - timedelta(seconds=rng.randint(0, 3))  # the ledger books just before the provider lists
        if status == BreakStatus.MISSING_IN_LEDGER:
            period.breaks.add((status.value, pid))
        else:
            booked = part + (rng.randint(1, 500) if status == BreakStatus.AMOUNT_MISMATCH else 0)
            book((new_id(), kind.value, pid, order_id, booked_at, ledger_entries(movement, booked, currency, seller)))
            if status == BreakStatus.AMOUNT_MISMATCH:
                period.breaks.add((status.value, pid))
        if status == BreakStatus.MISSING_IN_PROVIDER:
            status = BreakStatus.MATCHED  # the row itself matches; the break is a movement the provider lacks
            ghost = f"ch_{seed}ghost{i}"
            book((new_id(), TransactionKind.CAPTURE.value, ghost, f"ord_{seed}ghost{i}", at,
                  ledger_entries("charge", part, currency, seller)))  # fmt: skip
            period.breaks.add((BreakStatus.MISSING_IN_PROVIDER.value, ghost))
            period.counts[BreakStatus.MISSING_IN_PROVIDER] += 1
        period.counts[status] += 1
    if batch:
        on_ledger(batch)
    return period


def _write(
    writer: Any,  # csv.writer's object
    layout: Layout,
    txn: str,
    type_: str,
    source: str,
    gross: int,
    fee: int,
    currency: str,
    at: datetime,
    i: int,
) -> None:
    money = [format_minor(gross, currency), format_minor(fee, currency), format_minor(gross - fee, currency)]
    created = at.strftime("%Y-%m-%d %H:%M:%S")
    available = (at + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    # Every 97th description needs quoting: a comma, a quote and a line break inside one field.
    description = f'Order {i}, "gift"\nwrapped' if i % 97 == 0 else f"Order {i}"
    if layout == Layout.DASHBOARD:
        writer.writerow([txn, type_, source, *money, currency.lower(), created[:16] if i % 2 else created,
                         available, description, "", ""])  # fmt: skip
    else:
        writer.writerow([txn, created, available, currency.lower(), *money, type_, source, description])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.reconciliation_data", description=__doc__)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--breaks", type=int, default=0)
    parser.add_argument("--layout", choices=[layout.value for layout in Layout], default=Layout.DASHBOARD.value)
    parser.add_argument("--out", required=True, help="the CSV export to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ledger", help="also write the ledger side here, one JSON array per transaction")
    parser.add_argument("--expected", help="also write the expected breaks here (JSON)")
    args = parser.parse_args(argv)
    ledger = open(args.ledger, "w", encoding="utf-8") if args.ledger else None  # noqa: SIM115

    def on_ledger(batch: list[LedgerTx]) -> None:
        if ledger is not None:
            ledger.writelines(json.dumps([*tx[:4], tx[4].isoformat(), tx[5]]) + "\n" for tx in batch)

    try:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            period = write_period(
                out, rows=args.rows, breaks=args.breaks, layout=args.layout, on_ledger=on_ledger, seed=args.seed
            )
    finally:
        if ledger is not None:
            ledger.close()
    if args.expected:
        with open(args.expected, "w", encoding="utf-8") as expected:
            json.dump(sorted(period.breaks), expected)
    summary = {"rows": period.rows, "ledger_transactions": period.ledger_transactions, "counts": period.counts}
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
