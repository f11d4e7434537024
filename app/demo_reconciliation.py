"""The demo's month-end: one reconciliation of a Stripe export against the demo's own ledger.

``make demo`` (devtools/demo.py) calls :func:`seed_reconciliation` after the money story
(app/demo_payouts.py). The export is written here from the demo ledger's real provider movements (every
ledger transaction with a provider id and a ``provider_balance`` entry: captures, refunds paid, transfers,
reversals), as the Dashboard's balance-transactions export lists them, plus what a real export holds
that is not ours to book (Stripe's fees, a payout to the platform's bank): ignored. Three breaks are
injected, one of each kind, so the demo shows them:

- ``amount_mismatch``: the first charge is listed 0.50 EUR short;
- ``missing_in_ledger``: a charge the provider has (``ch_demo_unbooked``) that nobody booked;
- ``missing_in_provider``: one movement of the ledger (the middle one by time) left out of the export.

The reconciliation is started and run like ``sav reconcile --file`` does, as the demo's finance user, over
an explicit period around the movements. Done once: a database that has it already is left as it is.
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.auth import Actor, Role
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.ledger.posting import Account
from app.settings import Settings

if TYPE_CHECKING:
    from app.reconciliation.schemas import ReconciliationRead

FATOU = Actor(id="finance-fatou", role=Role.FINANCE, name="Fatou (finance)")
EXPORT_NAME = "demo-stripe-balance-export.csv"
SHORT_BY = 50  # minor units the first charge is listed short
UNBOOKED = ("ch_demo_unbooked", 4_200)  # a charge at the provider only
# The Dashboard export's type of each match class (rules.PROVIDER_CLASSES read backwards).
PROVIDER_TYPES = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_failure",
    "transfer": "transfer",
    "transfer_reversal": "transfer_refund",
}

Movement = tuple[str, str, str, int, str, datetime]  # (transaction id, class, provider id, amount, currency, at)


async def movements(engine: AsyncEngine) -> list[Movement]:
    """The ledger's provider movements, oldest first, each with its ``provider_balance`` sum."""
    from app.reconciliation.rules import LEDGER_CLASSES

    classes = {kind.value: match_class.value for kind, match_class in LEDGER_CLASSES.items()}
    query = (
        select(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.provider_id,
            func.sum(LedgerEntry.amount),
            func.min(LedgerEntry.currency),
            LedgerTransaction.created_at,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.account == Account.PROVIDER_BALANCE.value, LedgerTransaction.provider_id.is_not(None))
        .where(LedgerTransaction.kind.in_(classes))
        .group_by(LedgerTransaction.id)
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    )
    async with async_sessionmaker(engine)() as session:
        rows = (await session.execute(query)).all()
    return [
        (tx_id, classes[kind], str(provider_id), int(amount), currency, at if at.tzinfo else at.replace(tzinfo=UTC))
        for tx_id, kind, provider_id, amount, currency, at in rows
    ]


def write_export(path: Path, booked: list[Movement]) -> tuple[datetime, datetime]:
    """The export (see the module) and the period it covers, [first movement - 1 h, last + 1 h)."""
    from app.reconciliation.currencies import format_minor
    from app.reconciliation.parsing import HEADERS, Layout

    # Each break alone under its key (a key shared by two movements would make a mismatch of a left-out one).
    keys = Counter((m[1], m[2]) for m in booked)
    alone = [m for m in booked if keys[m[1], m[2]] == 1]
    left_out = alone[len(alone) // 2]
    first_charge = next(m for m in alone if m[1] == "charge" and m is not left_out)
    start, end = booked[0][5], booked[-1][5]
    rows: list[tuple[str, str, int, int, str, datetime, str]] = []  # type, source, amount, fee, currency, at
    for tx_id, match_class, provider_id, amount, currency, at in booked:
        if tx_id == left_out[0]:
            continue
        listed = amount - SHORT_BY if tx_id == first_charge[0] else amount
        fee = listed * 14 // 1000 + 25 if match_class == "charge" else 0
        rows.append((PROVIDER_TYPES[match_class], provider_id, listed, fee, currency, at, f"{match_class} {tx_id[:8]}"))
    middle = start + (end - start) / 2
    rows.append(("charge", UNBOOKED[0], UNBOOKED[1], 84, "EUR", middle, "a charge nobody booked"))
    fees = sum(row[3] for row in rows)
    rows.append(("stripe_fee", "", -fees, 0, "EUR", end, "Stripe fees"))  # not ours to book
    rows.append(("payout", "po_demo_bank", -10_000, 0, "EUR", end, "To the platform's bank"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADERS[Layout.DASHBOARD])
        for n, (type_, source, amount, fee, currency, at, description) in enumerate(rows, 1):
            money = [format_minor(value, currency) for value in (amount, fee, amount - fee)]
            created = at.strftime("%Y-%m-%d %H:%M:%S")
            available = (at + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
            writer.writerow([f"txn_demo_{n}", type_, source, *money, currency.lower(), created, available,
                             description, "", ""])  # fmt: skip
    return start - timedelta(hours=1), end + timedelta(hours=1)


async def seed_reconciliation(engine: AsyncEngine, *, settings: Settings) -> ReconciliationRead | None:
    """Write the export, reconcile it (see the module). None when the ledger has too few provider movements
    to show the breaks (two charges, each alone under its key); the existing one when the demo has it."""
    from app.reconciliation.job import LEASE, run_reconciliation
    from app.reconciliation.service import start_reconciliation

    existing = await find(engine, settings=settings)
    if existing is not None:
        return existing
    path = export_path(settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    booked = await movements(engine)
    keys = Counter((m[1], m[2]) for m in booked)
    if sum(1 for m in booked if keys[m[1], m[2]] == 1 and m[1] == "charge") < 2:
        return None
    period_from, period_to = write_export(path, booked)
    async with sessions() as session, session.begin():
        started = await start_reconciliation(
            session, actor=FATOU, period_from=period_from, period_to=period_to, file_path=path, lease=LEASE
        )
    # A file needs no payment provider; created leased to this process, so a running worker leaves it alone.
    return await run_reconciliation(
        sessions, None, started.reconciliation_id, edge_seconds=settings.reconciliation_edge_seconds, leased=True
    )


def export_path(settings: Settings) -> Path:
    return (Path(settings.reconciliation_files) / EXPORT_NAME).absolute()


async def find(engine: AsyncEngine, *, settings: Settings) -> ReconciliationRead | None:
    """The demo's reconciliation, when it has been made."""
    from app.reconciliation.models import Reconciliation
    from app.reconciliation.service import read

    query = select(Reconciliation).where(Reconciliation.file_path == str(export_path(settings))).limit(1)
    async with async_sessionmaker(engine)() as session:
        existing = await session.scalar(query)
        return None if existing is None else read(existing)


def summary(rec: ReconciliationRead | None) -> str:
    """One line on the demo's reconciliation (empty when there is none)."""
    if rec is None:
        return ""
    counts = rec.counts
    return (
        f"reconciliation {rec.reconciliation_id}: {rec.status}, {counts.matched} matched, "
        f"{counts.amount_mismatch} amount mismatch, {counts.missing_in_ledger} missing in ledger, "
        f"{counts.missing_in_provider} missing in provider, {counts.ignored} ignored"
        " — try GET /v1/reconciliations with the finance token"
    )
