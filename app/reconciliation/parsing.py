"""Reading a Stripe CSV export of balance transactions, one row at a time. Pure: text lines in, rows out.

Two layouts, told apart by the header (names trimmed and case-insensitive, any column order, extra columns
ignored):

- the Dashboard's balance-transactions export: ``id, Type, Source, Amount, Fee, Net, Currency,
  Created (UTC)`` (+ ``Available On (UTC)``, ``Description``, ``Transfer``...), times "2026-11-01 10:00"
  with or without seconds, lower-case currencies;
- the itemized balance-change report (``balance_change_from_activity.itemized.*``):
  ``balance_transaction_id, created_utc, currency, gross, fee, net, reporting_category, source_id``
  (+ ``available_on_utc``, ``description``...), where ``reporting_category`` is the type.

Amounts are decimal major units, converted exactly with the currency's exponent. The file is never held:
``read_export`` takes an iterable of lines (an open file is one) and yields rows as it reads them; the
column positions are worked out once from the header. The first row that cannot be read stops it with
``UnreadableExport`` naming the physical line (the header is line 1) and the column as the file spells it.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from app.reconciliation.currencies import (
    EXACT,
    InvalidAmount,
    InvalidCurrency,
    exponent,
    normalize_currency,
    parse_minor,
)

if TYPE_CHECKING:
    from app.payouts.gateway import ProviderBalanceTransaction


class Layout(StrEnum):
    DASHBOARD = "dashboard"
    ITEMIZED = "itemized"


# The fields of a row, in ProviderRow's order, and the column each layout names them by (lower case).
FIELDS = ("balance_transaction_id", "type", "source", "amount", "fee", "net", "currency", "created")
COLUMNS: dict[Layout, tuple[str, ...]] = {
    Layout.DASHBOARD: ("id", "type", "source", "amount", "fee", "net", "currency", "created (utc)"),
    Layout.ITEMIZED: (
        "balance_transaction_id",
        "reporting_category",
        "source_id",
        "gross",
        "fee",
        "net",
        "currency",
        "created_utc",
    ),
}
# The header each layout is written with (devtools/reconciliation_data.py, tests); optional columns last.
HEADERS: dict[Layout, tuple[str, ...]] = {
    Layout.DASHBOARD: (
        "id",
        "Type",
        "Source",
        "Amount",
        "Fee",
        "Net",
        "Currency",
        "Created (UTC)",
        "Available On (UTC)",
        "Description",
        "Transfer",
        "Transfer Group",
    ),
    Layout.ITEMIZED: (
        "balance_transaction_id",
        "created_utc",
        "available_on_utc",
        "currency",
        "gross",
        "fee",
        "net",
        "reporting_category",
        "source_id",
        "description",
    ),
}


class UnreadableExport(ValueError):
    """The file is not a balance export we can read: ``line`` is the 1-based physical line of the row (1 for
    the header), ``column`` the column's name as the file writes it (None when the header itself is wrong)."""

    def __init__(self, line: int, column: str | None, reason: str) -> None:
        self.line, self.column, self.reason = line, column, reason
        where = f"line {line}" if column is None else f"line {line}, column {column!r}"
        super().__init__(f"{where}: {reason}")


class ProviderRow(NamedTuple):
    """One balance transaction of the provider. ``line`` is its line in the file (0 when pulled from the
    provider's API); amounts are signed minor units (``amount`` is the gross, as the API's ``amount``);
    ``currency`` is upper case like the ledger's; ``created`` is aware, in UTC.

    A named tuple rather than a frozen dataclass: as immutable, built six times faster (a frozen
    dataclass's ``__init__`` alone took 2 s a million rows), and a tuple already, as bulk inserts take them."""

    line: int
    balance_transaction_id: str
    type: str
    source: str | None
    amount: int
    fee: int
    net: int
    currency: str
    created: datetime


def from_gateway(tx: ProviderBalanceTransaction) -> ProviderRow:
    """A balance transaction pulled through the payment gateway, as the same row a file would give."""
    return ProviderRow(
        0,
        tx.id,
        tx.type.lower(),
        tx.source or None,
        tx.amount,
        tx.fee,
        tx.net,
        normalize_currency(tx.currency),
        datetime.fromtimestamp(tx.created, UTC),
    )


def detect_layout(header: Sequence[str]) -> tuple[Layout, tuple[int, ...]]:
    """The layout of a header row and the position of each of ``FIELDS`` in it, or ``UnreadableExport``."""
    names = [name.strip().lstrip("\ufeff").strip().lower() for name in header]
    closest_by_layout: list[tuple[int, Layout, list[str]]] = []
    for layout, wanted in COLUMNS.items():
        missing = [name for name in wanted if name not in names]
        if not missing:
            twice = [name for name in wanted if names.count(name) > 1]
            if twice:
                raise UnreadableExport(1, None, f"column {twice[0]!r} appears more than once")
            return layout, tuple(names.index(name) for name in wanted)
        closest_by_layout.append((len(missing), layout, missing))
    _, layout, missing = min(closest_by_layout)
    raise UnreadableExport(
        1,
        None,
        "not a Stripe balance export: the header lacks "
        + ", ".join(repr(name) for name in missing)
        + f" (closest layout: {layout.value})",
    )


def read_export(lines: Iterable[str]) -> Iterator[ProviderRow]:
    """The rows of an export, in file order. Blank lines are skipped; a byte-order mark is dropped."""
    remaining = iter(lines)
    first = next(remaining, None)
    if first is None:
        return  # an empty file has no rows (and nothing to be wrong about)
    reader = csv.reader(itertools.chain((first.removeprefix("\ufeff"),), remaining), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines before the header
    except csv.Error as exc:
        raise UnreadableExport(reader.line_num, None, f"not CSV: {exc}") from exc
    if header is None:
        return
    _, positions = detect_layout(header)
    names = tuple(header[i].strip().lstrip("\ufeff").strip() for i in positions)  # as the file spells them
    i_id, i_type, i_source, i_amount, i_fee, i_net, i_currency, i_created = positions
    # A currency as written -> (code, the test of an amount in its exact form, exponent): a handful per file.
    currencies: dict[str, tuple[str, Callable[[str], object], int]] = {}
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise UnreadableExport(start, None, f"not CSV: {exc}") from exc
        if row is None:
            return
        end = reader.line_num
        if not row:
            continue
        try:
            # The fast path: every cell as expected. Anything off is diagnosed below, column by column.
            txn, kind, source, created = row[i_id].strip(), row[i_type].strip(), row[i_source].strip(), row[i_created]
            known = currencies.get(row[i_currency])
            if known is None:
                code = normalize_currency(row[i_currency])
                known = currencies[row[i_currency]] = (code, EXACT[exponent(code)].fullmatch, exponent(code))
            currency, exact, places = known
            amount, fee, net = row[i_amount], row[i_fee], row[i_net]
            if not txn or not kind or created[10] not in " T":
                raise ValueError
            if len(created) == 19 or len(created) == 16:  # no zone: UTC (cheaper than ``replace(tzinfo=)``)
                at = datetime.fromisoformat(created + "+00:00")
            else:
                at = _parse_time(created, start, names[7])
            yield ProviderRow(
                start,
                txn,
                kind.lower(),
                source or None,
                # Inlined parse_minor for the exact form; any other goes through it.
                int(amount.replace(".", "", 1)) if exact(amount) else parse_minor(amount, places),
                int(fee.replace(".", "", 1)) if exact(fee) else parse_minor(fee, places),
                int(net.replace(".", "", 1)) if exact(net) else parse_minor(net, places),
                currency,
                at,
            )
        except (ValueError, IndexError):
            if not any(cell.strip() for cell in row):
                continue  # a line of empty cells (",,,,"), as spreadsheets leave at the end
            yield _read_slowly(row, start, positions, names)


def _read_slowly(row: list[str], line: int, positions: tuple[int, ...], names: tuple[str, ...]) -> ProviderRow:
    """The same row read with every cell checked on its own, to say which one is wrong (or, when the fast
    path only stumbled on spaces around the values, to read it anyway)."""
    cells: dict[str, str] = {}
    # In the file's column order, so that the first wrong cell of the line is the one named.
    for position, field, name in sorted(zip(positions, FIELDS, names, strict=True)):
        if position >= len(row):
            raise UnreadableExport(line, name, f"missing: the row has {len(row)} cells, the header more")
        cell = row[position].strip()
        if not cell and field != "source":
            raise UnreadableExport(line, name, "empty")
        cells[field] = cell
    column = dict(zip(FIELDS, names, strict=True))
    try:
        currency = normalize_currency(cells["currency"])
    except InvalidCurrency as exc:
        raise UnreadableExport(line, column["currency"], str(exc)) from None
    places = exponent(currency)
    amounts: dict[str, int] = {}
    for field in ("amount", "fee", "net"):
        try:
            amounts[field] = parse_minor(cells[field], places)
        except InvalidAmount as exc:
            raise UnreadableExport(line, column[field], f"{exc} ({currency})") from None
    return ProviderRow(
        line,
        cells["balance_transaction_id"],
        cells["type"].lower(),
        cells["source"] or None,
        amounts["amount"],
        amounts["fee"],
        amounts["net"],
        currency,
        _parse_time(cells["created"], line, column["created"]),
    )


def _parse_time(text: str, line: int, column: str) -> datetime:
    """UTC times as the exports write them: "2026-11-01 10:00", "2026-11-01 10:00:05", or ISO 8601 with
    "T" and "Z" or an offset. A date alone is refused: a movement's time decides its period."""
    try:
        if len(text) < 16 or text[10] not in " T":
            raise ValueError
        created = datetime.fromisoformat(text)
    except ValueError:
        raise UnreadableExport(line, column, f"not a time (2026-11-01 10:00:05 UTC): {text!r}") from None
    return created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
