"""Running a reconciliation: the worker's ``reconcile`` job, and ``run_reconciliation`` for in-process callers
(the CLI, the benchmark).

A run is leased like the outbox's rows (app/outbox.py): the claim counts an attempt and owns the
reconciliation until ``next_attempt_at``; every batch renews the lease under the same attempt number, so a
worker that lost it (it stalled, another took over) stops at its next batch. A run always starts from
scratch: it drops whatever an earlier attempt staged or found, then

1. stages the provider's rows in batches (PostgreSQL: ``COPY`` on the driver's connection; SQLite:
   ``executemany``), one transaction per batch that also moves ``progress.rows``, so a GET shows it;
2. matches in SQL (``matching.py``), writes the counts and totals, drops the staged rows: ``done``.

A file row that cannot be read fails it (``error`` names the line and column) with no items. The provider's
rows come from every page of the gateway's balance transactions of [from - edge, to + edge): those outside
[from, to) only absorb the ledger's movements booked near the edges (see matching.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import utcnow
from app.payouts.gateway import PaymentGateway, PaymentProviderError
from app.reconciliation import matching
from app.reconciliation.models import DONE, FAILED, RUNNING, Reconciliation, reconciliation_rows
from app.reconciliation.parsing import ProviderRow, UnreadableExport, from_gateway, read_export
from app.reconciliation.rules import provider_class
from app.reconciliation.schemas import ReconciliationRead
from app.reconciliation.service import read

logger = logging.getLogger("sav.reconciliation")

LEASE = timedelta(seconds=120)
BATCH = 20_000
MAX_ATTEMPTS = 5
EDGE_SECONDS = 3_600
COLUMNS = tuple(column.name for column in reconciliation_rows.columns)
OnProgress = Callable[[int], object]
NULL = "\\N"  # COPY's text format
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
SQLITE_INSERT = f"INSERT INTO reconciliation_rows ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608


class LostLease(Exception):
    """Another worker owns the reconciliation now (this one's lease ran out): stop, it starts again there."""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    attempt: int
    source: str
    period_from: datetime | None
    period_to: datetime | None
    file_path: str | None


async def _claim(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, rec_id: str | None = None
) -> Claimed | None:
    """Take one running reconciliation whose lease has run out (``rec_id``: that one, if its lease has)."""
    async with sessions() as session, session.begin():
        query = select(Reconciliation).where(Reconciliation.status == RUNNING, Reconciliation.next_attempt_at <= now)
        if rec_id is None:
            query = query.order_by(Reconciliation.next_attempt_at)
        else:
            query = query.where(Reconciliation.id == rec_id)
        rec = await session.scalar(query.limit(1).with_for_update(skip_locked=True))
        if rec is None:
            return None
        if rec.attempts >= MAX_ATTEMPTS:
            await _finish_failed(session, rec, f"gave up after {rec.attempts} attempts", now)
            return None
        rec.attempts += 1
        rec.next_attempt_at = now + LEASE
        return Claimed(rec.id, rec.attempts, rec.source, rec.period_from, rec.period_to, rec.file_path)


async def reconcile_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    gateway: PaymentGateway | None,
    edge_seconds: int = EDGE_SECONDS,
    now: datetime | None = None,
) -> int:
    """The worker's job: run one due reconciliation to its end. Returns how many it ran (0 or 1)."""
    claimed = await _claim(sessions, now=now or utcnow())
    if claimed is None:
        return 0
    await _run(sessions, gateway, claimed, edge_seconds=edge_seconds, on_progress=None)
    return 1


async def run_reconciliation(
    sessions: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway | None,
    rec_id: str,
    on_progress: OnProgress | None = None,
    *,
    edge_seconds: int = EDGE_SECONDS,
    leased: bool = False,
) -> ReconciliationRead:
    """Run ``rec_id`` here and now, calling ``on_progress`` with the rows staged so far after each batch;
    returns it as it ends. ``leased``: the caller created it leased to itself (``start_reconciliation(lease=
    LEASE)``) and runs it as that first attempt. Otherwise it is claimed as the worker claims it: only when
    nobody holds its lease; a reconciliation a worker is running is left to it and returned as it is."""
    if leased:
        claimed = await _first_attempt(sessions, rec_id)
    else:
        claimed = await _claim(sessions, now=utcnow(), rec_id=rec_id)
    if claimed is not None:
        await _run(sessions, gateway, claimed, edge_seconds=edge_seconds, on_progress=on_progress)
    async with sessions() as session:
        rec = await session.get(Reconciliation, rec_id)
        if rec is None:
            raise LookupError(f"no reconciliation {rec_id}")
        return read(rec)


async def _first_attempt(sessions: async_sessionmaker[AsyncSession], rec_id: str) -> Claimed | None:
    """A reconciliation created leased to its caller, as its first attempt (None if it is not that anymore)."""
    async with sessions() as session:
        rec = await session.get(Reconciliation, rec_id)
        if rec is None or rec.status != RUNNING or rec.attempts != 1:
            return None
        return Claimed(rec.id, rec.attempts, rec.source, rec.period_from, rec.period_to, rec.file_path)


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway | None,
    claimed: Claimed,
    *,
    edge_seconds: int,
    on_progress: OnProgress | None,
) -> None:
    preaggregating: asyncio.Task[None] | None = None
    try:
        async with sessions() as session, session.begin():
            await _renew(session, claimed, rows=0)
            await matching.clear(session, claimed.id, items=True)
            postgresql = session.get_bind().dialect.name == "postgresql"
        encode = _copy_text if postgresql else _sqlite_rows
        # PostgreSQL, a period given: its ledger side does not depend on the file, so a second connection
        # aggregates it while this one stages the file (Python-bound here, PostgreSQL-bound there).
        if postgresql and claimed.period_from is not None and claimed.period_to is not None:
            preaggregating = asyncio.create_task(
                _preaggregate(sessions, claimed.id, claimed.period_from, claimed.period_to)
            )
        staged, began = 0, time.perf_counter()
        logger.info("reconciliation %s: attempt %d claimed", claimed.id, claimed.attempt)
        async for rows, batch in _batches(claimed, gateway, edge_seconds, encode):
            async with sessions() as session, session.begin():
                await _stage(session, batch)
                if not staged:
                    logger.info("reconciliation %s: first batch staged at %.2f s", claimed.id, _since(began))
                staged += rows
                await _renew(session, claimed, rows=staged)
            if on_progress is not None:
                on_progress(staged)
        logger.info("reconciliation %s: %d rows staged at %.2f s", claimed.id, staged, _since(began))
        if preaggregating is not None:
            await preaggregating
            logger.info("reconciliation %s: ledger side aggregated at %.2f s", claimed.id, _since(began))
        async with sessions() as session, session.begin():
            await _renew(session, claimed, rows=staged)
            await _match(session, claimed, preaggregating is not None)
        logger.info("reconciliation %s: matched, done at %.2f s", claimed.id, _since(began))
    except LostLease:
        logger.warning(
            "reconciliation %s: lease lost at attempt %d, left to its new owner", claimed.id, claimed.attempt
        )
    except (UnreadableExport, PaymentProviderError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, PaymentProviderError) and exc.transient and claimed.attempt < MAX_ATTEMPTS:
            raise  # the lease runs out and a later pass starts it again
        async with sessions() as session, session.begin():
            rec = await _owned(session, claimed)
            await matching.clear(session, claimed.id, items=True)
            await _finish_failed(session, rec, _describe(exc), utcnow())
    finally:
        if preaggregating is not None:
            await _drop_preaggregated(sessions, claimed, preaggregating)


async def _preaggregate(
    sessions: async_sessionmaker[AsyncSession], rec_id: str, start: datetime, end: datetime
) -> None:
    async with sessions() as session, session.begin():
        await matching.preaggregate(session, rec_id, start, end)


async def _drop_preaggregated(
    sessions: async_sessionmaker[AsyncSession], claimed: Claimed, task: asyncio.Task[None]
) -> None:
    """The run's pre-aggregated ledger side goes, whatever its end (a run that failed first lets it finish)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
    async with sessions() as session, session.begin():
        await matching.drop_preaggregated(session, claimed.id)


def _since(began: float) -> float:
    return time.perf_counter() - began


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"the file is not UTF-8 text (byte {exc.start} of a read chunk)"
    if isinstance(exc, PaymentProviderError):
        return f"the payment provider refused the listing: {exc}"
    if isinstance(exc, OSError):
        return f"the file cannot be read: {exc.strerror or exc}"
    return str(exc)


async def _owned(session: AsyncSession, claimed: Claimed) -> Reconciliation:
    rec = await session.scalar(
        select(Reconciliation)
        .where(Reconciliation.id == claimed.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if rec is None or rec.status != RUNNING or rec.attempts != claimed.attempt:
        raise LostLease(claimed.id)
    return rec


async def _renew(session: AsyncSession, claimed: Claimed, *, rows: int) -> None:
    """Move the progress and the lease on, if the run is still this one's."""
    done = await session.execute(
        update(Reconciliation)
        .where(
            Reconciliation.id == claimed.id,
            Reconciliation.status == RUNNING,
            Reconciliation.attempts == claimed.attempt,
        )
        .values(rows=rows, next_attempt_at=utcnow() + LEASE)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise LostLease(claimed.id)


async def _finish_failed(session: AsyncSession, rec: Reconciliation, error: str, now: datetime) -> None:
    rec.status, rec.error, rec.finished_at = FAILED, error[:1000], now


async def _match(session: AsyncSession, claimed: Claimed, preaggregated: bool = False) -> None:
    rec = await _owned(session, claimed)
    if rec.period_from is not None and rec.period_to is not None:
        span: tuple[datetime, datetime] | None = (rec.period_from, rec.period_to)
    else:
        span = await matching.period_span(session, rec.id)
    if span is None:
        found = matching.nothing_found()
    else:
        found = await matching.match(session, rec.id, *span, preaggregated)
    counts = found.counts
    rec.matched, rec.amount_mismatch = counts["matched"], counts["amount_mismatch"]
    rec.missing_in_ledger, rec.missing_in_provider = counts["missing_in_ledger"], counts["missing_in_provider"]
    rec.ignored = counts["ignored"]
    rec.totals, rec.item_ranges = found.totals, found.ranges
    await matching.clear(session, rec.id, items=False)
    rec.status, rec.finished_at = DONE, utcnow()


# --- the provider's rows --------------------------------------------------------------------------------


def _staged(
    rec_id: str, rows: Iterable[ProviderRow], start: datetime | None, end: datetime | None
) -> list[tuple[Any, ...]]:
    """Rows as staged (COLUMNS' order). A bookable row without a source is keyed by its own id: it can
    only be missing in the ledger. One comprehension with each type's class looked up once per batch (a
    call per row for the row and another for its class cost ~0.7 s a million rows)."""
    classes: dict[str, str | None] = {}

    def class_of(type_: str) -> str | None:
        match_class = provider_class(type_)
        found = classes[type_] = None if match_class is None else match_class.value
        return found

    everything = start is None or end is None
    return [
        (
            rec_id,
            row.balance_transaction_id,
            row.source or row.balance_transaction_id,
            classes[row.type] if row.type in classes else class_of(row.type),
            row.amount,
            row.currency,
            row.created,
            everything or start <= row.created < end,  # type: ignore[operator]
        )
        for row in rows
    ]


# COPY's text format (PostgreSQL): a field holding one of these is escaped; null is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[tuple[Any, ...]]) -> str:
    """Staged rows as one block of COPY text, written at once (``write_row`` per row took a quarter of the
    CLI's CPU at a million rows). Only the provider's ids come from outside; a batch where one holds a
    backslash, a tab or a line break is written again with every field escaped. The only backslashes of
    our own are the nulls' (``\\N``, one per row without a class): the test counts them rather than
    looking for any backslash, which sent every batch holding an ignored row down the escaping path."""
    nulls = sum(1 for row in rows if row[3] is None)
    text = "".join(
        f"{rec}\t{txn}\t{pid}\t{cls or NULL}\t{amount}\t{cur}\t{at.isoformat()}\t{'t' if in_period else 'f'}\n"
        for rec, txn, pid, cls, amount, cur, at, in_period in rows
    )
    if text.count("\\") != nulls or "\r" in text or text.count("\t") != 7 * len(rows) or text.count("\n") != len(rows):
        text = "".join(
            f"{rec}\t{txn.translate(_COPY_ESCAPES)}\t{pid.translate(_COPY_ESCAPES)}\t{cls or NULL}\t{amount}\t"
            f"{cur}\t{at.isoformat()}\t{'t' if in_period else 'f'}\n"
            for rec, txn, pid, cls, amount, cur, at, in_period in rows
        )
    return text


def _sqlite_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Staged rows for the driver's ``executemany``, times as SQLAlchemy writes them on SQLite (naive UTC)."""
    return [(*row[:6], row[6].astimezone(UTC).strftime(SQLITE_TIME), row[7]) for row in rows]


async def _batches(
    claimed: Claimed, gateway: PaymentGateway | None, edge_seconds: int, encode: Callable[[list[Any]], Any]
) -> AsyncIterator[tuple[int, Any]]:
    """(rows, the batch as ``_stage`` takes it) until the source ends."""
    start, end = claimed.period_from, claimed.period_to
    if claimed.source == "file":
        if claimed.file_path is None:
            raise UnreadableExport(1, None, "the reconciliation has no file")
        # Reading, parsing and encoding run in a thread, a batch ahead: the next batch is read while this
        # one is staged (and the event loop, the API when the worker is embedded, keeps serving).
        lines = await anyio.to_thread.run_sync(partial(open, claimed.file_path, encoding="utf-8", newline=""))
        loop = asyncio.get_running_loop()
        rows = read_export(lines)

        def next_batch() -> tuple[int, Any]:
            batch = _staged(claimed.id, itertools.islice(rows, BATCH), start, end)
            return len(batch), encode(batch) if batch else None

        ahead = loop.run_in_executor(None, next_batch)
        try:
            while True:
                count, encoded = await ahead
                if not count:
                    break
                ahead = loop.run_in_executor(None, next_batch)
                yield count, encoded
        finally:
            with contextlib.suppress(Exception):  # the consumer stopped early: let the reader finish first
                await ahead
            await anyio.to_thread.run_sync(lines.close)
        return
    if gateway is None:
        raise PaymentProviderError(
            "no payment provider is configured (SAV_STRIPE_API_KEY)", code="not_configured", transient=False
        )
    if start is None or end is None:
        raise PaymentProviderError("a provider reconciliation needs its period", code="no_period", transient=False)
    edge = timedelta(seconds=edge_seconds)
    batch: list[tuple[Any, ...]] = []
    after: str | None = None
    while True:
        page = await gateway.list_balance_transactions(
            created_from=math.floor((start - edge).timestamp()),
            created_to=math.ceil((end + edge).timestamp()) - 1,  # the gateway's bound is inclusive
            starting_after=after,
            limit=100,
        )
        batch += _staged(claimed.id, (from_gateway(tx) for tx in page.items), start, end)
        if len(batch) >= BATCH:
            yield len(batch), encode(batch)
            batch = []
        if not page.has_more or not page.items:
            break
        after = page.items[-1].id
    if batch:
        yield len(batch), encode(batch)


async def _stage(session: AsyncSession, batch: Any) -> None:
    """One encoded batch into the staging table: COPY text on PostgreSQL, ``executemany`` on SQLite."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # psycopg's AsyncConnection, in this session's transaction
        async with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY reconciliation_rows ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            await copy.write(batch)
        return
    await conn.exec_driver_sql(SQLITE_INSERT, batch)
