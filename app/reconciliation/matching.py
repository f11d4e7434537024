"""Matching a reconciliation's staged provider rows against the ledger, in SQL (never row by row in Python).

Both sides, as one ``UNION ALL``, are aggregated once per key (provider id, match class: ``rules.py``): no
join (SQLite ran a FULL JOIN of two aggregates as nested loops; PostgreSQL spent as long on the join as on
either aggregate). The result is inserted into ``reconciliation_items`` by one ``INSERT ... SELECT`` ordered
by status (each status one run of ids, kept as the reconciliation's ``item_ranges``); counts and
per-currency totals come from that insert (PostgreSQL: its ``RETURNING`` aggregated in the same statement).
The statuses are ``rules.break_status``'s, written as SQL.

The period's edges: provider rows of [from, to) are matched by key whatever the ledger's booking date (a
capture booked at 23:59:59 on the 31st and listed at 00:00:01 on the 1st matches in the period that lists
it). The ledger movements booked in [from, to) that no provider row of the period names are
``missing_in_provider`` — unless the provider lists that key in the edge band staged around the period
(``in_period`` false): then it belongs to the neighbouring period, which matches it, and it is no break.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.models import LedgerEntry, LedgerTransaction
from app.reconciliation.models import Reconciliation, ReconciliationItem, reconciliation_rows
from app.reconciliation.rules import LEDGER_CLASSES, PROVIDER_ACCOUNT, BreakStatus

rows = reconciliation_rows.c
NOT_LISTED = "booked in the period, not listed by the provider"
NOT_BOOKED = "listed by the provider, not in the ledger"
OTHER_AMOUNT = "the amounts differ"
OTHER_CURRENCY = "the currencies differ"
WORK_MEM = "32MB"


def _movements() -> tuple[Any, Any, Any]:
    """(match class, the join of provider movements' entries, its filter) of the ledger's provider side."""
    t, e = LedgerTransaction, LedgerEntry
    kinds = [kind.value for kind in LEDGER_CLASSES]
    match_class = case({kind.value: cls.value for kind, cls in LEDGER_CLASSES.items()}, value=t.kind)
    joined = t.__table__.join(e, and_(e.transaction_id == t.id, e.account == PROVIDER_ACCOUNT.value))
    return match_class, joined, and_(t.provider_id.is_not(None), t.kind.in_(kinds))


def ledger_table(rec_id: str) -> Any:
    """The period's ledger side pre-aggregated per key (an unlogged table of this run, PostgreSQL only)."""
    name = "reconciliation_ledger_" + "".join(ch for ch in rec_id.lower() if ch.isalnum() or ch == "_")
    return table(
        name,
        column("provider_id", String(255)),
        column("match_class", String(32)),
        column("l_amount", BigInteger),
        column("l_lo", String(3)),
        column("l_hi", String(3)),
    )


async def preaggregate(session: AsyncSession, rec_id: str, start: datetime, end: datetime) -> None:
    """Aggregate the ledger's movements booked in [start, end) per key into ``ledger_table`` (they do not
    depend on the file: a second connection does it while the file is staged)."""
    target = ledger_table(rec_id)
    await session.execute(text(f'DROP TABLE IF EXISTS "{target.name}"'))
    await session.execute(
        text(
            f'CREATE UNLOGGED TABLE "{target.name}" (provider_id varchar(255), match_class varchar(32), '
            "l_amount bigint, l_lo varchar(3), l_hi varchar(3))"
        )
    )
    await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    t, e = LedgerTransaction, LedgerEntry
    match_class, joined, where = _movements()
    grouped = (
        select(t.provider_id, match_class, func.sum(e.amount), func.min(e.currency), func.max(e.currency))
        .select_from(joined)
        .where(where, t.created_at >= start, t.created_at < end)
        .group_by(t.provider_id, match_class)
    )
    await session.execute(insert(target).from_select(list(target.c.keys()), grouped))
    await session.execute(text(f'ANALYZE "{target.name}"'))


async def drop_preaggregated(session: AsyncSession, rec_id: str) -> None:
    await session.execute(text(f'DROP TABLE IF EXISTS "{ledger_table(rec_id).name}"'))


def _sides(rec_id: str, start: datetime, end: datetime, *, preaggregated: bool = False) -> Any:
    """Both sides as one stream of rows keyed (provider id, match class), to be aggregated once.

    - the provider's bookable rows: those of the period carry their amount, currency and id (``p``); those
      of the edge band only mark the key (``edge``);
    - the ledger's provider movements, one row per ``provider_balance`` entry (``l``, ``booked``: booked
      in [start, end)): those booked in the period, and those of any date whose provider id a provider row
      of the period names (kept only for a key the period lists).
    A movement is a transaction of a kind in ``LEDGER_CLASSES`` with a provider id; its amount is the sum
    of its ``provider_balance`` entries (a transaction without one moved nothing at the provider)."""
    t, e = LedgerTransaction, LedgerEntry
    kinds = [kind.value for kind in LEDGER_CLASSES]
    mine = and_(rows.reconciliation_id == rec_id, rows.match_class.is_not(None))
    named = select(rows.provider_id).where(mine, rows.in_period.is_(True))
    booked_in = and_(t.created_at >= start, t.created_at < end)
    match_class = case({kind.value: cls.value for kind, cls in LEDGER_CLASSES.items()}, value=t.kind)
    in_period = rows.in_period.is_(True)
    zero, one = literal_column("0", Integer), literal_column("1", Integer)
    provider = select(
        rows.provider_id.label("provider_id"),
        rows.match_class.label("match_class"),
        case((in_period, rows.amount)).label("p_amount"),
        case((in_period, rows.currency)).label("p_currency"),
        case((in_period, rows.balance_transaction_id)).label("txn"),
        case((in_period, 1), else_=0).label("p"),
        case((in_period, 0), else_=1).label("edge"),
        cast(null(), BigInteger).label("l_amount"),
        cast(null(), String(3)).label("l_currency"),
        cast(null(), String(3)).label("l_currency_hi"),
        zero.label("l"),
        zero.label("booked"),
    ).where(mine)

    def ledger(booked: int, where: Any) -> Any:
        return (
            select(
                t.provider_id,
                match_class,
                cast(null(), BigInteger),
                cast(null(), String(3)),
                cast(null(), String(255)),
                zero,
                zero,
                e.amount,
                e.currency,
                e.currency,
                one,
                literal_column(str(booked), Integer),
            )
            .select_from(t)
            .join(e, and_(e.transaction_id == t.id, e.account == PROVIDER_ACCOUNT.value))
            .where(t.provider_id.is_not(None), t.kind.in_(kinds), where)
        )

    # Two disjoint sets, so nothing to deduplicate: the movements booked in the period, and those booked
    # outside it that a provider row of the period names, as a semi-join (PostgreSQL can spill its hash to
    # disk; ``IN`` under an ``OR`` was a subplan that had to hash a million ids in work_mem, or was re-run for
    # every movement).
    outside = and_(or_(t.created_at < start, t.created_at >= end), t.provider_id.in_(named))
    if preaggregated:
        pre = ledger_table(rec_id).c
        nothing = cast(null(), String(255))
        in_period_side: Any = select(
            pre.provider_id,
            pre.match_class,
            cast(null(), BigInteger),
            cast(null(), String(3)),
            nothing,
            zero,
            zero,
            pre.l_amount,
            pre.l_lo,
            pre.l_hi,
            one,
            one,
        )
    else:
        in_period_side = ledger(1, booked_in)
    return union_all(provider, in_period_side, ledger(0, outside)).subquery("sides")


async def period_span(session: AsyncSession, rec_id: str) -> tuple[datetime, datetime] | None:
    """A file given without a period covers its own span: [first row, last row]."""
    first, last = (
        await session.execute(
            select(func.min(rows.created), func.max(rows.created)).where(rows.reconciliation_id == rec_id)
        )
    ).one()
    if first is None or last is None:
        return None
    return first, last + timedelta(microseconds=1)


async def match(
    session: AsyncSession, rec_id: str, start: datetime, end: datetime, preaggregated: bool = False
) -> Found:
    """Write the reconciliation's items (in the caller's transaction); returns what it found.
    ``preaggregated``: the period's ledger side is in ``ledger_table`` already (``preaggregate``)."""
    if session.get_bind().dialect.name == "postgresql":
        # Memory per sort or hash for this transaction only: at a million keys the aggregate spills to disk
        # at any size that keeps the backend bounded (256 MB: 557 MB of hash, 5 batches; 32 MB: 21 batches,
        # as fast; docs/benchmarks.md), and the default 4 MB sorts in too many runs. The staged rows get
        # statistics (the planner otherwise takes a million rows for a thousand, and picks plans for a thousand).
        await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        await session.execute(text("ANALYZE reconciliation_rows"))
    sides = _sides(rec_id, start, end, preaggregated=preaggregated)
    # Per key: one aggregate over both sides (no join): each side's sum, currencies and presence.
    key = (sides.c.provider_id, sides.c.match_class)
    has_p, has_l = func.max(sides.c.p) == 1, func.max(sides.c.l) == 1
    p_amount, l_amount = func.sum(sides.c.p_amount), func.sum(sides.c.l_amount)
    p_lo, p_hi = func.min(sides.c.p_currency), func.max(sides.c.p_currency)
    l_lo, l_hi = func.min(sides.c.l_currency), func.max(sides.c.l_currency_hi)
    same_currency = and_(p_lo == p_hi, l_lo == l_hi, p_lo == l_lo)
    status = case(
        (~has_p, BreakStatus.MISSING_IN_PROVIDER.value),
        (~has_l, BreakStatus.MISSING_IN_LEDGER.value),
        (and_(same_currency, p_amount == l_amount), BreakStatus.MATCHED.value),
        else_=BreakStatus.AMOUNT_MISMATCH.value,
    )
    status_label = status.label("status")
    reason = case(
        (~has_p, NOT_LISTED),
        (~has_l, NOT_BOOKED),
        (~same_currency, OTHER_CURRENCY),
        (p_amount != l_amount, OTHER_AMOUNT),
        else_=None,
    )
    found = (
        select(
            literal(rec_id),
            status_label,
            sides.c.provider_id,
            func.min(sides.c.txn),
            sides.c.match_class,
            p_amount,
            p_lo,
            l_amount,
            l_lo,
            reason,
        )
        .group_by(*key)
        # A key the period's provider rows list; or a movement booked in the period that no provider row
        # of the edge band claims for the neighbouring period.
        .having(or_(has_p, and_(func.max(sides.c.booked) == 1, func.max(sides.c.edge) == 0)))
    )
    item = ReconciliationItem
    columns = [
        item.reconciliation_id,
        item.status,
        item.provider_id,
        item.balance_transaction_id,
        item.type,
        item.provider_amount,
        item.provider_currency,
        item.ledger_amount,
        item.ledger_currency,
        item.reason,
    ]
    # Ordered by status: each status's items get one contiguous run of ids, which the listing reads as a
    # primary-key range (the ranges are kept on the reconciliation; there is no status index to maintain).
    written = insert(item).from_select(columns, found.order_by(status_label))
    if session.get_bind().dialect.name == "postgresql":
        # The counts and totals from the inserted rows themselves (RETURNING into one aggregate): no scan of
        # the items afterwards.
        inserted = written.returning(*_SUMMED).cte("inserted")
        groups = (await session.execute(_summary(inserted.c))).all()
    else:
        # SQLite has no INSERT in a CTE: the items written are the ids after the last one before (one writer
        # at a time), read back as a primary-key range.
        before = await session.scalar(select(func.coalesce(func.max(item.id), 0)))
        await session.execute(written)
        groups = (await session.execute(_summary(item).where(item.id > before, item.reconciliation_id == rec_id))).all()
    return _found(groups, await _ignored(session, rec_id))


_SUMMED = (
    ReconciliationItem.status,
    ReconciliationItem.provider_amount,
    ReconciliationItem.provider_currency,
    ReconciliationItem.ledger_amount,
    ReconciliationItem.ledger_currency,
    ReconciliationItem.id,
)


def _summary(src: Any) -> Any:
    """Per (status, provider currency, ledger currency): the items, each side's sum, the drift's parts and
    the ids' range. A few dozen groups; ``_found`` turns them into counts, totals and ranges."""
    same = src.provider_currency == src.ledger_currency
    return select(
        src.status,
        src.provider_currency,
        src.ledger_currency,
        func.count(),
        func.sum(src.provider_amount),
        func.sum(src.ledger_amount),
        func.sum(case((same, func.abs(src.provider_amount - src.ledger_amount)), else_=0)),
        func.sum(func.abs(src.provider_amount)),
        func.sum(func.abs(src.ledger_amount)),
        func.min(src.id),
        func.max(src.id),
    ).group_by(src.status, src.provider_currency, src.ledger_currency)


@dataclass(frozen=True, slots=True)
class Found:
    """What a matching found: items per status (and the ignored rows), per-currency totals, and each
    status's ids as [first, last]."""

    counts: dict[str, int]
    totals: list[dict[str, Any]]
    ranges: dict[str, list[int]]


def _found(groups: Any, ignored: int) -> Found:
    """Counts, totals and ranges from ``_summary``'s groups. Per currency: each side's signed sum in that
    currency, and the gross drift (the sum over keys of |provider - ledger|; a key whose two sides are in
    different currencies, or has one side only, drifts by each side's whole amount, in its own currency)."""
    counts = {status.value: 0 for status in BreakStatus}
    counts[BreakStatus.IGNORED.value] = ignored
    ranges: dict[str, list[int]] = {}
    sums: dict[str, list[int]] = {}  # currency: [provider, ledger, drift]
    for status, p_cur, l_cur, n, p_sum, l_sum, diff, p_abs, l_abs, first, last in groups:
        counts[status] += int(n)
        lo, hi = ranges.get(status, (first, last))
        ranges[status] = [min(lo, first), max(hi, last)]
        same = p_cur is not None and p_cur == l_cur
        if p_cur is not None:
            side = sums.setdefault(p_cur, [0, 0, 0])
            side[0] += int(p_sum)
            side[2] += int(diff if same else p_abs)
        if l_cur is not None:
            side = sums.setdefault(l_cur, [0, 0, 0])
            side[1] += int(l_sum)
            side[2] += 0 if same else int(l_abs)
    totals = [
        {"currency": cur, "provider_net": p, "ledger_net": led, "gross_drift": drift}
        for cur, (p, led, drift) in sorted(sums.items())
    ]
    return Found(counts, totals, ranges)


def nothing_found(ignored: int = 0) -> Found:
    return _found((), ignored)


async def _ignored(session: AsyncSession, rec_id: str) -> int:
    """The period's rows that are not ours to book."""
    ignored = await session.scalar(
        select(func.count()).where(
            rows.reconciliation_id == rec_id, rows.in_period.is_(True), rows.match_class.is_(None)
        )
    )
    return int(ignored or 0)


async def clear(session: AsyncSession, rec_id: str, *, items: bool) -> None:
    """Drop the reconciliation's staged rows (and its items: a run that starts again starts from scratch)."""
    await session.execute(delete(reconciliation_rows).where(rows.reconciliation_id == rec_id))
    if not items:
        return
    # Items exist only once their ranges are kept (both written in the transaction that marks it done).
    ranges = await session.scalar(select(Reconciliation.item_ranges).where(Reconciliation.id == rec_id))
    if ranges:
        first = min(lo for lo, _ in ranges.values())
        last = max(hi for _, hi in ranges.values())
        item = ReconciliationItem
        await session.execute(delete(item).where(item.id.between(first, last), item.reconciliation_id == rec_id))
