"""Reconciliations: started here (a period pulled from the provider, or an uploaded export), run by the
worker (``job.py``), read and explained here. Finance and admins only (the policy's ``reconciliation``
lines); explaining a break is finance's.

An upload is streamed to disk (``SAV_RECONCILIATION_DIR``) in chunks and only its header is read before
answering: an export in neither layout is refused at once (422 ``reconciliation.unknown_layout``). The
rows are read by the worker.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import anyio
from sqlalchemy import ColumnElement, and_, false, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth import Actor
from app.db import utcnow
from app.errors import BusinessRuleViolation, Conflict, Forbidden, NotFound
from app.money import Money
from app.paging import newest_first_key, next_cursor, older_than, window
from app.permissions.enforcer import may_ever
from app.reconciliation import parsing
from app.reconciliation.models import RUNNING, Reconciliation, ReconciliationItem
from app.reconciliation.rules import BreakStatus
from app.reconciliation.schemas import (
    Counts,
    CurrencyTotal,
    Explanation,
    ItemRead,
    Progress,
    ReconciliationRead,
)
from app.schemas import Page, decode_cursor, encode_cursor

CHUNK = 1024 * 1024
UNKNOWN_LAYOUT = "reconciliation.unknown_layout"
CSV_COLUMNS = (
    "item_id",
    "status",
    "provider_id",
    "balance_transaction_id",
    "type",
    "provider_amount",
    "provider_currency",
    "ledger_amount",
    "ledger_currency",
    "reason",
    "explanation_note",
    "explained_by",
    "explained_at",
)


def _require(actor: Actor, action: str) -> None:
    if not may_ever(actor, "reconciliation", action):
        raise Forbidden(f"a {actor.role} may not {action} reconciliations")


def read(rec: Reconciliation) -> ReconciliationRead:
    return ReconciliationRead(
        reconciliation_id=rec.id,
        status=rec.status,  # type: ignore[arg-type]
        source=rec.source,  # type: ignore[arg-type]
        from_=rec.period_from,
        to=rec.period_to,
        progress=Progress(rows=rec.rows),
        counts=Counts(
            matched=rec.matched,
            amount_mismatch=rec.amount_mismatch,
            missing_in_ledger=rec.missing_in_ledger,
            missing_in_provider=rec.missing_in_provider,
            ignored=rec.ignored,
        ),
        totals=[CurrencyTotal(**total) for total in rec.totals or []],
        error=rec.error,
        created_at=rec.created_at,
        finished_at=rec.finished_at,
    )


def check_layout(path: Path) -> None:
    """Refuse a file whose header is neither layout (only its first lines are read)."""
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            for header in csv.reader(lines):
                if any(cell.strip() for cell in header):
                    parsing.detect_layout(header)
                    return
    except parsing.UnreadableExport as exc:
        raise BusinessRuleViolation(f"file: {exc}", code=UNKNOWN_LAYOUT) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BusinessRuleViolation(f"file: not a UTF-8 CSV export ({exc})", code=UNKNOWN_LAYOUT) from None
    raise BusinessRuleViolation("file: empty, no header row", code=UNKNOWN_LAYOUT)


async def start_reconciliation(
    session: AsyncSession,
    *,
    actor: Actor,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    file_path: str | Path | None = None,
    now: datetime | None = None,
    lease: timedelta | None = None,
) -> ReconciliationRead:
    """A reconciliation ``running`` for the worker: of the provider's period [from, to) when no file is
    given (both required), else of the export at ``file_path`` (its header checked here), its period
    optional. The worker takes it at once (``next_attempt_at`` = now), unless ``lease`` is given: then it is
    created as its first attempt, leased to the caller for that long (``job.run_reconciliation(leased=True)``
    runs it; no worker takes it meanwhile)."""
    _require(actor, "write")
    if file_path is None and (period_from is None or period_to is None):
        raise BusinessRuleViolation("from and to are both required", code="reconciliation.invalid_period")
    if (period_from is None) != (period_to is None):
        raise BusinessRuleViolation("give both from and to, or neither", code="reconciliation.invalid_period")
    if period_from is not None and period_to is not None and period_from >= period_to:
        raise BusinessRuleViolation("from must be before to", code="reconciliation.invalid_period")
    path = None if file_path is None else await anyio.Path(file_path).absolute()
    if path is not None:
        await anyio.to_thread.run_sync(check_layout, Path(path))
    now = now or utcnow()
    rec = Reconciliation(
        id=f"rec_{uuid.uuid4().hex}",
        status=RUNNING,
        source="provider" if file_path is None else "file",
        period_from=period_from,
        period_to=period_to,
        file_path=None if path is None else str(path),
        rows=0,
        matched=0,
        amount_mismatch=0,
        missing_in_ledger=0,
        missing_in_provider=0,
        ignored=0,
        created_by=actor.id,
        created_at=now,
        attempts=0 if lease is None else 1,
        next_attempt_at=now if lease is None else now + lease,
    )
    session.add(rec)
    await session.flush()
    return read(rec)


async def accept_upload(
    session: AsyncSession,
    *,
    actor: Actor,
    read_chunk: Callable[[int], Awaitable[bytes]],
    directory: str,
    period_from: datetime | None,
    period_to: datetime | None,
) -> ReconciliationRead:
    """Save an uploaded export to ``directory`` chunk by chunk, then start its reconciliation; a file
    refused is deleted."""
    _require(actor, "write")
    folder = anyio.Path(directory)
    await folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"upload_{uuid.uuid4().hex}.csv"
    try:
        async with await anyio.open_file(path, "wb") as out:
            while chunk := await read_chunk(CHUNK):
                await out.write(chunk)
        return await start_reconciliation(
            session, actor=actor, period_from=period_from, period_to=period_to, file_path=str(path)
        )
    except BaseException:
        await path.unlink(missing_ok=True)
        raise


async def get_reconciliation(session: AsyncSession, *, actor: Actor, rec_id: str) -> ReconciliationRead:
    _require(actor, "read")
    rec = await session.get(Reconciliation, rec_id)
    if rec is None:
        raise NotFound("no such reconciliation")
    return read(rec)


async def list_reconciliations(
    session: AsyncSession, *, actor: Actor, limit: int, cursor: str | None
) -> Page[ReconciliationRead]:
    """Newest first."""
    _require(actor, "read")
    query = select(Reconciliation)
    if cursor is not None:
        query = query.where(older_than(cursor, Reconciliation.created_at, Reconciliation.id))
    found, more = window(
        (
            await session.scalars(
                query.order_by(Reconciliation.created_at.desc(), Reconciliation.id.desc()).limit(limit + 1)
            )
        ).all(),
        limit,
    )
    return Page(items=[read(rec) for rec in found], next_cursor=next_cursor(found, more, newest_first_key))


def read_item(item: ReconciliationItem) -> ItemRead:
    explanation = None
    if item.explanation_note is not None and item.explained_by is not None and item.explained_at is not None:
        explanation = Explanation(note=item.explanation_note, by=item.explained_by, at=item.explained_at)
    return ItemRead(
        item_id=str(item.id),
        status=item.status,  # type: ignore[arg-type]
        provider_id=item.provider_id,
        balance_transaction_id=item.balance_transaction_id,
        type=item.type,
        provider_amount=_money(item.provider_amount, item.provider_currency),
        ledger_amount=_money(item.ledger_amount, item.ledger_currency),
        reason=item.reason,
        explanation=explanation,
    )


def _money(amount: int | None, currency: str | None) -> Money | None:
    return None if amount is None or currency is None else Money(amount, currency)


async def _existing(session: AsyncSession, rec_id: str) -> Reconciliation:
    rec = await session.get(Reconciliation, rec_id)
    if rec is None:
        raise NotFound("no such reconciliation")
    return rec


def _items_of(rec: Reconciliation, status: str | None) -> ColumnElement[bool]:
    """The reconciliation's items (of ``status``): a primary-key range, from the ids its run kept per status."""
    ranges = rec.item_ranges or {}
    spans = list(ranges.values()) if status is None else [ranges[status]] if status in ranges else []
    if not spans:
        return false()
    item = ReconciliationItem
    first, last = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    where = and_(item.id.between(first, last), item.reconciliation_id == rec.id)
    return where if status is None else and_(where, item.status == status)


async def list_items(
    session: AsyncSession, *, actor: Actor, rec_id: str, status: str | None, limit: int, cursor: str | None
) -> Page[ItemRead]:
    """A reconciliation's items in id order (stable while finance explains them)."""
    _require(actor, "read")
    rec = await _existing(session, rec_id)
    query = select(ReconciliationItem).where(_items_of(rec, status))
    if cursor is not None:
        (after,) = decode_cursor(cursor, (int,))
        query = query.where(ReconciliationItem.id > after)
    found, more = window((await session.scalars(query.order_by(ReconciliationItem.id).limit(limit + 1))).all(), limit)
    return Page(
        items=[read_item(item) for item in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


async def items_csv(
    session: AsyncSession, engine: AsyncEngine, *, actor: Actor, rec_id: str, status: str | None
) -> AsyncIterator[bytes]:
    """Every item of the filter as CSV with a header row: checked now (404, 403), then streamed from a
    server-side cursor on a connection of its own, a few hundred rows in memory at a time."""
    _require(actor, "read")
    rec = await _existing(session, rec_id)
    item = ReconciliationItem
    query = select(*(getattr(item, "id" if name == "item_id" else name) for name in CSV_COLUMNS))
    query = query.where(_items_of(rec, status))
    return _stream_csv(engine, query.order_by(item.id))


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode()
        self.parts.clear()
        return data


# A spreadsheet runs a cell beginning with these as a formula: text cells get a leading apostrophe.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_TEXT = {CSV_COLUMNS.index(name) for name in ("provider_id", "balance_transaction_id", "reason", "explanation_note")}


async def _stream_csv(engine: AsyncEngine, query: object, batch: int = 500) -> AsyncIterator[bytes]:
    buffer = _Buffer()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.take()
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=batch))  # type: ignore[attr-defined]
        async for part in result.partitions(batch):
            for row in part:
                cells = list(row)
                for i in _TEXT:
                    if isinstance(cells[i], str) and cells[i].startswith(_FORMULA):
                        cells[i] = "'" + cells[i]
                if cells[-1] is not None:
                    cells[-1] = cells[-1].isoformat()
                writer.writerow(cells)
            yield buffer.take()


async def explain_item(
    session: AsyncSession, *, actor: Actor, rec_id: str, item_id: str, note: str, now: datetime | None = None
) -> ItemRead:
    """Mark a break explained, once; who and when are kept. A matched item is no break (409)."""
    _require(actor, "explain")
    await _existing(session, rec_id)
    item = None
    if item_id.isdigit() and len(item_id) < 19:
        item = await session.scalar(
            select(ReconciliationItem)
            .where(ReconciliationItem.id == int(item_id), ReconciliationItem.reconciliation_id == rec_id)
            .with_for_update()
        )
    if item is None:
        raise NotFound("no such item in this reconciliation")
    if item.status == BreakStatus.MATCHED:
        raise Conflict("a matched item is not a break: there is nothing to explain", code="reconciliation.not_a_break")
    if item.explanation_note is not None:
        raise Conflict("this break is already explained", code="reconciliation.already_explained")
    item.explanation_note, item.explained_by, item.explained_at = note, actor.id, now or utcnow()
    await session.flush()
    return read_item(item)
