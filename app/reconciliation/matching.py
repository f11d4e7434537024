"""Matching a reconciliation's staged provider rows against the ledger, in SQL (never row by row in Python).

Both sides are aggregated per key (provider id, match class: ``rules.py``), then FULL OUTER JOINed; the
result is inserted into ``reconciliation_items`` by one ``INSERT ... SELECT``; counts and per-currency
totals are SQL aggregates over the items. The statuses are ``rules.break_status``'s, written as SQL.

The period's edges: provider rows of [from, to) are matched by key whatever the ledger's booking date (a
capture booked at 23:59:59 on the 31st and listed at 00:00:01 on the 1st matches in the period that lists
it). The ledger movements booked in [from, to) that no provider row of the period names are
``missing_in_provider`` — unless the provider lists that key in the edge band staged around the period
(``in_period`` false): then it belongs to the neighbouring period, which matches it, and it is no break.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, insert, literal, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger.models import LedgerEntry, LedgerTransaction
from app.reconciliation.models import ReconciliationItem, reconciliation_rows
from app.reconciliation.rules import LEDGER_CLASSES, PROVIDER_ACCOUNT, BreakStatus

rows = reconciliation_rows.c
NOT_LISTED = "booked in the period, not listed by the provider"
NOT_BOOKED = "listed by the provider, not in the ledger"
OTHER_AMOUNT = "the amounts differ"
OTHER_CURRENCY = "the currencies differ"


def _provider_side(rec_id: str) -> Any:
    """The provider's bookable rows of the period, per key."""
    return (
        select(
            rows.provider_id,
            rows.match_class,
            func.sum(rows.amount).label("amount"),
            func.min(rows.currency).label("cur_lo"),
            func.max(rows.currency).label("cur_hi"),
            func.min(rows.balance_transaction_id).label("txn"),
        )
        .where(rows.reconciliation_id == rec_id, rows.in_period.is_(True), rows.match_class.is_not(None))
        .group_by(rows.provider_id, rows.match_class)
        .subquery("p")
    )


def _ledger_side(rec_id: str, start: datetime, end: datetime) -> Any:
    """The ledger's provider movements, per key: those booked in [start, end), and those of any date whose
    provider id a provider row of the period names (kept only for a key the period lists: ``booked_in``).
    A movement is a transaction of a kind in ``LEDGER_CLASSES`` with a provider id; its amount is the sum
    of its ``provider_balance`` entries (a transaction without one moved nothing at the provider)."""
    t, e = LedgerTransaction, LedgerEntry
    kinds = [kind.value for kind in LEDGER_CLASSES]
    named = select(rows.provider_id).where(
        rows.reconciliation_id == rec_id, rows.in_period.is_(True), rows.match_class.is_not(None)
    )
    booked_in = and_(t.created_at >= start, t.created_at < end)
    match_class = case({kind.value: cls.value for kind, cls in LEDGER_CLASSES.items()}, value=t.kind)
    return (
        select(
            t.provider_id.label("provider_id"),
            match_class.label("match_class"),
            func.sum(e.amount).label("amount"),
            func.min(e.currency).label("cur_lo"),
            func.max(e.currency).label("cur_hi"),
            # 1 when one of the key's movements was booked in the period (else it is here for a provider row)
            func.max(case((booked_in, 1), else_=0)).label("booked_in"),
        )
        .select_from(t)
        .join(e, and_(e.transaction_id == t.id, e.account == PROVIDER_ACCOUNT.value))
        # One pass over the ledger's movements with the period's provider ids hashed (PostgreSQL: a hashed
        # subplan), rather than a union of two scans that must then be deduplicated by a sort.
        .where(t.provider_id.is_not(None), t.kind.in_(kinds), or_(booked_in, t.provider_id.in_(named)))
        .group_by(t.provider_id, match_class)
        .subquery("l")
    )


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


async def match(session: AsyncSession, rec_id: str, start: datetime, end: datetime) -> None:
    """Write the reconciliation's items (in the caller's transaction)."""
    if session.get_bind().dialect.name == "postgresql":
        # Aggregates and the join over a million keys sort and hash in memory rather than on disk, for
        # this transaction only (the default 4 MB spills at a few hundred thousand rows).
        await session.execute(text("SET LOCAL work_mem = '256MB'"))
    p, ledger = _provider_side(rec_id), _ledger_side(rec_id, start, end)
    same_currency = and_(p.c.cur_lo == p.c.cur_hi, ledger.c.cur_lo == ledger.c.cur_hi, p.c.cur_lo == ledger.c.cur_lo)
    status = case(
        (p.c.provider_id.is_(None), BreakStatus.MISSING_IN_PROVIDER.value),
        (ledger.c.provider_id.is_(None), BreakStatus.MISSING_IN_LEDGER.value),
        (and_(same_currency, p.c.amount == ledger.c.amount), BreakStatus.MATCHED.value),
        else_=BreakStatus.AMOUNT_MISMATCH.value,
    )
    reason = case(
        (p.c.provider_id.is_(None), NOT_LISTED),
        (ledger.c.provider_id.is_(None), NOT_BOOKED),
        (~same_currency, OTHER_CURRENCY),
        (p.c.amount != ledger.c.amount, OTHER_AMOUNT),
        else_=None,
    )
    in_edge_band = exists().where(
        rows.reconciliation_id == rec_id,
        rows.in_period.is_(False),
        rows.provider_id == ledger.c.provider_id,
        rows.match_class == ledger.c.match_class,
    )
    joined = p.join(
        ledger,
        and_(p.c.provider_id == ledger.c.provider_id, p.c.match_class == ledger.c.match_class),
        full=True,
    )
    found = (
        select(
            literal(rec_id),
            status,
            func.coalesce(p.c.provider_id, ledger.c.provider_id),
            p.c.txn,
            func.coalesce(p.c.match_class, ledger.c.match_class),
            p.c.amount,
            p.c.cur_lo,
            ledger.c.amount,
            ledger.c.cur_lo,
            reason,
        )
        .select_from(joined)
        .where(or_(p.c.provider_id.is_not(None), and_(ledger.c.booked_in == 1, ~in_edge_band)))
    )
    item = ReconciliationItem
    await session.execute(
        insert(item).from_select(
            [
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
            ],
            found,
        )
    )


async def counts(session: AsyncSession, rec_id: str) -> dict[str, int]:
    """The items per status, and the period's rows that are not ours to book (ignored)."""
    item = ReconciliationItem
    found = {status.value: 0 for status in BreakStatus}
    per_status = await session.execute(
        select(item.status, func.count()).where(item.reconciliation_id == rec_id).group_by(item.status)
    )
    for status, count in per_status.all():
        found[status] = int(count)
    found[BreakStatus.IGNORED.value] = int(
        await session.scalar(
            select(func.count()).where(
                rows.reconciliation_id == rec_id, rows.in_period.is_(True), rows.match_class.is_(None)
            )
        )
        or 0
    )
    return found


async def totals(session: AsyncSession, rec_id: str) -> list[dict[str, Any]]:
    """Per currency: each side's signed sum in that currency, and the gross drift (the sum over keys of
    |provider - ledger|; a key whose two sides are in different currencies drifts by each side's whole
    amount, in its own currency)."""
    item = ReconciliationItem
    same = item.provider_currency == item.ledger_currency
    mine = item.reconciliation_id == rec_id
    provider_side = select(
        item.provider_currency.label("currency"),
        item.provider_amount.label("provider"),
        literal(0).label("ledger"),
        case((same, func.abs(item.provider_amount - item.ledger_amount)), else_=func.abs(item.provider_amount)).label(
            "drift"
        ),
    ).where(mine, item.provider_amount.is_not(None))
    ledger_side = select(
        item.ledger_currency,
        literal(0),
        item.ledger_amount,
        case((same, 0), else_=func.abs(item.ledger_amount)),
    ).where(mine, item.ledger_amount.is_not(None))
    sides = union_all(provider_side, ledger_side).subquery("sides")
    result = await session.execute(
        select(sides.c.currency, func.sum(sides.c.provider), func.sum(sides.c.ledger), func.sum(sides.c.drift))
        .group_by(sides.c.currency)
        .order_by(sides.c.currency)
    )
    return [
        {"currency": cur, "provider_net": int(p), "ledger_net": int(led), "gross_drift": int(drift)}
        for cur, p, led, drift in result.all()
    ]


async def clear(session: AsyncSession, rec_id: str, *, items: bool) -> None:
    """Drop the reconciliation's staged rows (and its items: a run that starts again starts from scratch)."""
    await session.execute(delete(reconciliation_rows).where(rows.reconciliation_id == rec_id))
    if items:
        await session.execute(delete(ReconciliationItem).where(ReconciliationItem.reconciliation_id == rec_id))
