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

Fast enough for the benchmark's million rows (a few seconds): lines are written as ``csv.writer`` would
write them but by hand (only one description in 97 needs quoting), times come from a table of the day's
86 400 "HH:MM:SS" strings rather than a ``strftime`` per row, and each random decision is one
``random()`` call (``randint`` and ``choices`` cost several).

    python -m devtools.reconciliation_data --rows 1000000 --breaks 1000 --layout dashboard --out period.csv \
        [--seed 1] [--ledger ledger.jsonl] [--expected breaks.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TextIO

from app.ledger.posting import Account, TransactionKind
from app.reconciliation.currencies import exponent, normalize_currency
from app.reconciliation.parsing import HEADERS, Layout
from app.reconciliation.rules import BreakStatus

Entry = tuple[str, int, str, str | None]
LedgerTx = tuple[str, str, str | None, str | None, datetime, list[Entry]]

START = datetime(2026, 11, 1, tzinfo=UTC)
IGNORED_EVERY = 20  # rows i with i % 20 == 19 are a Stripe fee or a payout
# (provider type, reporting category, ledger kind, the id prefix of the provider object, sign at the provider)
MOVEMENTS = {
    "charge": ("charge", "charge", TransactionKind.CAPTURE.value, "ch", 1),
    "refund": ("refund", "refund", TransactionKind.REFUND_PAID.value, "re", -1),
    "refund_failure": ("refund_failure", "refund_failure", TransactionKind.REFUND_REVERSED.value, "re", 1),
    "transfer": ("transfer", "transfer", TransactionKind.TRANSFER_PAID.value, "tr", -1),
    "transfer_reversal": ("transfer_refund", "transfer_reversal", TransactionKind.TRANSFER_REVERSED.value, "trr", 1),
}
_CAPTURE = TransactionKind.CAPTURE.value
# What an order goes through, drawn per order: (weight, movements).
STORIES = (
    (60, ("charge", "transfer")),
    (15, ("charge", "refund", "transfer")),
    (10, ("charge",)),
    (8, ("charge", "transfer", "transfer_reversal")),
    (7, ("charge", "refund", "refund_failure", "transfer")),
)
CURRENCIES = (("EUR", 90), ("JPY", 5), ("KWD", 5))
# The same draws as tables of 100 (the weights sum to 100): one random float picks an entry.
# A story is kept as its movements reversed, so that ``pop()`` takes the next one.
STORY_TABLE = tuple(
    tuple((movement, *MOVEMENTS[movement]) for movement in reversed(story))
    for weight, story in STORIES
    for _ in range(weight)
)
CURRENCY_TABLE = tuple(currency for currency, weight in CURRENCIES for _ in range(weight))


@dataclass
class Period:
    rows: int = 0
    ledger_transactions: int = 0
    breaks: set[tuple[str, str]] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {status.value: 0 for status in BreakStatus})


_PB, _ESCROW = Account.PROVIDER_BALANCE.value, Account.ESCROW.value
_REFUNDS, _TRANSFERS = Account.REFUNDS_IN_FLIGHT.value, Account.TRANSFERS_IN_FLIGHT.value
_RECOVERABLE = Account.SELLER_RECOVERABLE.value


def ledger_entries(movement: str, amount: int, currency: str, seller: str) -> list[Entry]:
    """Balanced entries of a provider movement of ``amount`` (positive), as app/ledger/postings.py writes them."""
    if movement == "charge":
        return [(_PB, amount, currency, None), (_ESCROW, -amount, currency, None)]
    if movement == "refund":
        return [(_REFUNDS, amount, currency, None), (_PB, -amount, currency, None)]
    if movement == "refund_failure":  # a late failure: the payment undone (and the issue, netted here)
        return [(_PB, amount, currency, None), (_ESCROW, -amount, currency, seller)]
    if movement == "transfer":
        return [(_TRANSFERS, amount, currency, seller), (_PB, -amount, currency, None)]
    return [(_PB, amount, currency, None), (_RECOVERABLE, -amount, currency, seller)]


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
    """Write the period's export to ``out`` and pass its ledger to ``on_ledger`` in batches; see the module.

    Row ``i`` is created ``days * 86400 * i // rows`` whole seconds after ``start`` (UTC, microseconds dropped)."""
    layout = Layout(layout)
    rng = random.Random(seed)
    draw = rng.random  # one float per decision: randint and choices cost several calls each
    bookable = rows - rows // IGNORED_EVERY
    if 3 * breaks > bookable:
        raise ValueError(f"{3 * breaks} breaks need at least that many bookable rows ({bookable} in {rows})")
    # The j-th bookable row is row j + j // (IGNORED_EVERY - 1): no list of N, only the 3K chosen ones.
    chosen = rng.sample(range(bookable), 3 * breaks)
    kinds = (BreakStatus.AMOUNT_MISMATCH, BreakStatus.MISSING_IN_LEDGER, BreakStatus.MISSING_IN_PROVIDER)
    injected = {j + j // (IGNORED_EVERY - 1): kinds[n // breaks] for n, j in enumerate(chosen)} if breaks else {}
    start = (start if start.tzinfo is not None else start.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    # Times as text from two tables (the day, then the time of day) instead of a strftime per row.
    dates = [(start.date() + timedelta(days=d)).isoformat() + " " for d in range(days + 4)]
    times_of_day, start_second = _times_of_day(), start.hour * 3600 + start.minute * 60 + start.second
    span, second = days * 86_400, timedelta(seconds=1)
    dashboard = layout == Layout.DASHBOARD
    period, lines = Period(rows=rows), [",".join(HEADERS[layout]) + "\r\n"]
    batch: list[LedgerTx] = []
    found, broken = period.breaks, dict.fromkeys(kinds, 0)
    story: list[tuple[str, str, str, str, str, int]] = []
    order_n = counter = amount = ignored = 0
    currency, order_id, seller, suffix = "EUR", "", "", ""
    money, currency_text, zero = _formatter("EUR"), "eur", "0.00"
    id_prefix = f"{seed:016x}"
    id_prefix = f"{id_prefix[:8]}-{id_prefix[8:12]}-{id_prefix[12:]}-"

    for i in range(rows):
        offset = span * i // rows
        day, time_of_day = divmod(start_second + offset, 86_400)
        created = dates[day] + times_of_day[time_of_day]
        available = dates[day + 2] + times_of_day[time_of_day]
        if i % IGNORED_EVERY == IGNORED_EVERY - 1:  # a Stripe fee or a payout to the platform's bank
            if i // IGNORED_EVERY % 2 == 0:
                type_, pid, gross = "stripe_fee", "", -100 - int(draw() * 4901)
            else:
                type_, pid, gross = "payout", f"po_{seed}x{i}", -100_000 - int(draw() * 4_900_001)
            gross_text = net_text = _EUR(gross)
            fee_text, row_currency = "0.00", "eur"
            ignored += 1
        else:
            if not story:
                order_n += 1
                story = list(STORY_TABLE[int(draw() * len(STORY_TABLE))])
                currency = CURRENCY_TABLE[int(draw() * len(CURRENCY_TABLE))]
                money, currency_text, zero = _formatter(currency), currency.lower(), _formatter(currency)(0)
                amount = (5 + int(draw() * 1996)) * (1 if currency == "JPY" else 100 if currency == "EUR" else 1000)
                amount += int(draw() * 100) if currency != "JPY" else 0
                order_id, seller, suffix = f"ord_{seed}x{order_n}", f"shop_{order_n % 97}", f"_{seed}x{order_n}"
            movement, type_, category, kind, prefix, sign = story.pop()
            if not dashboard:
                type_ = category
            pid, row_currency = prefix + suffix, currency_text  # a refund and its failure name the same re_
            # The shop gets 90 % (the commission stays); a refund, its failure or a reversal is a third of it.
            if movement == "charge":
                part, fee = amount, amount * 14 // 1000 + 25
                gross_text, fee_text, net_text = money(part), money(fee), money(part - fee)
            else:
                part = amount * 9 // 10 if movement == "transfer" else max(1, amount // 3)
                gross_text = net_text = money(sign * part)
                fee_text = zero
            status = injected.get(i)
            # The ledger books it up to 3 s before the provider lists it.
            booked_at = start + second * (offset - int(draw() * 4))
            if status is None:  # nearly every row
                counter += 1
                batch.append((_uuid(id_prefix, counter), kind, pid, order_id, booked_at,
                              ledger_entries(movement, part, currency, seller)))  # fmt: skip
            else:
                broken[status] += 1
                found.add((status.value, pid))
                if status is not BreakStatus.MISSING_IN_LEDGER:
                    booked = part + (1 + int(draw() * 500) if status is BreakStatus.AMOUNT_MISMATCH else 0)
                    counter += 1
                    batch.append((_uuid(id_prefix, counter), kind, pid, order_id, booked_at,
                                  ledger_entries(movement, booked, currency, seller)))  # fmt: skip
                if status is BreakStatus.MISSING_IN_PROVIDER:  # this row matches; the ledger has one more
                    ghost = f"ch_{seed}ghost{i}"
                    found.remove((status.value, pid))
                    found.add((status.value, ghost))
                    counter += 1
                    entries = ledger_entries("charge", part, currency, seller)
                    batch.append((_uuid(id_prefix, counter), _CAPTURE, ghost, f"ord_{seed}ghost{i}",
                                  start + second * offset, entries))  # fmt: skip
            if len(batch) >= batch_size:
                handed, batch = batch[:batch_size], batch[batch_size:]
                period.ledger_transactions += len(handed)
                on_ledger(handed)
        # Every 97th description needs quoting: a comma, a quote and a line break inside one field.
        description = f'"Order {i}, ""gift""\nwrapped"' if i % 97 == 0 else f"Order {i}"
        lines.append(
            # Odd rows of the Dashboard's layout have no seconds, as it sometimes writes times.
            f"txn_{seed}x{i},{type_},{pid},{gross_text},{fee_text},{net_text},{row_currency},"
            f"{created[:16] if i % 2 else created},{available},{description},,\r\n"
            if dashboard
            else f"txn_{seed}x{i},{created},{available},{row_currency},{gross_text},{fee_text},{net_text},{type_},"
            f"{pid},{description}\r\n"
        )
        if len(lines) >= 4096:
            out.writelines(lines)
            lines.clear()
    out.writelines(lines)
    if batch:
        period.ledger_transactions += len(batch)
        on_ledger(batch)
    period.counts.update({status.value: count for status, count in broken.items()})
    period.counts[BreakStatus.IGNORED] = ignored
    period.counts[BreakStatus.MATCHED] = rows - ignored - broken[kinds[0]] - broken[kinds[1]]
    return period


@cache
def _times_of_day() -> list[str]:
    return [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def _uuid(prefix: str, counter: int) -> str:
    """``str(uuid.UUID(int=(seed << 64) | counter))`` for a prefix made from the seed, without the object."""
    low = f"{counter:016x}"
    return f"{prefix}{low[:4]}-{low[4:]}"


@cache
def _formatter(currency: str) -> Callable[[int], str]:
    """``format_minor`` for one currency, without looking its exponent up for every amount."""
    places = exponent(normalize_currency(currency))
    if not places:
        return str
    scale = 10**places

    def formatted(amount: int) -> str:
        whole, fraction = divmod(-amount if amount < 0 else amount, scale)
        return f"{'-' if amount < 0 else ''}{whole}.{fraction:0{places}d}"

    return formatted


_EUR = _formatter("EUR")


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
