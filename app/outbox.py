"""A leased outbox: rows a worker claims for a while, acts on outside any transaction, then records.

Refund payments (app/payouts/settlement.py) and webhook deliveries (app/webhooks/service.py) are both
such rows: a ``status``, an ``attempts`` count and a ``next_attempt_at``. One worker pass (``work``):

1. ``claim``: due rows (``pending``, ``next_attempt_at`` passed), oldest first, ``FOR UPDATE SKIP
   LOCKED`` so workers running at once take different rows (SQLite's write lock serializes them); each
   claimed row counts the attempt and moves ``next_attempt_at`` a lease ahead; commit. No transaction
   stays open across the network.
2. act on every claimed item at once (ask the payment provider, POST the event);
3. ``record_outcomes``: in one transaction for the whole pass, or, if that fails, one transaction per
   item so one bad row does not hold back the others. Each domain records an outcome only if the row is
   still its own (same attempt): a lease that ran out was taken by another worker.

A worker that dies after claiming loses nothing: the lease runs out and the row is due again. Failed
attempts come back after ``backoff``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger("sav.outbox")

PENDING = "pending"

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
Recorded = TypeVar("Recorded")


class Leased(Protocol):
    """The columns a leased row has (the ORM instance the claim query selects first)."""

    attempts: int
    next_attempt_at: datetime


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[*tuple[Any, ...]],
    *,
    table: Any,
    now: datetime,
    batch: int,
    lease: timedelta,
    take: Callable[[Row[*tuple[Any, ...]]], Item],
) -> list[Item]:
    """Claim up to ``batch`` due rows of ``table``. ``query`` selects the row first (and what else the
    work needs, joined); ``take`` turns each claimed result row into the item worked on, after the claim
    counted the attempt (``item.attempt`` is then the number to record under)."""
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                query.where(table.status == PENDING, table.next_attempt_at <= now)
                .order_by(table.next_attempt_at)
                .limit(batch)
                .with_for_update(skip_locked=True, of=table)
            )
        ).all()
        claimed = []
        for row in rows:
            leased: Leased = row[0]
            leased.attempts += 1
            leased.next_attempt_at = now + lease
            claimed.append(take(row))
        return claimed


def backoff(attempt: int, *, first_seconds: float, max_seconds: float, jitter: float = 0.0) -> timedelta:
    """How long after failed attempt number ``attempt`` (1, 2...) to try again: ``first_seconds``, then
    doubling, capped at ``max_seconds``, plus up to ``jitter`` of it at random so retries do not stampede."""
    seconds = min(first_seconds * 2 ** (attempt - 1), max_seconds)
    if jitter:
        seconds *= 1 + random.random() * jitter  # noqa: S311 - jitter, not security
    return timedelta(seconds=seconds)


async def work(
    claimed: Sequence[Item],
    act: Callable[[Item], Awaitable[Outcome]],
    record: Callable[[list[tuple[Item, Outcome]]], Awaitable[Any]],
) -> int:
    """Act on every claimed item at once (no transaction open), then record the outcomes. Returns how
    many items were worked on."""
    if not claimed:
        return 0
    outcomes = await asyncio.gather(*(act(item) for item in claimed))
    await record(list(zip(claimed, outcomes, strict=True)))
    return len(claimed)


Row_ = TypeVar("Row_")


async def lock_rows(session: AsyncSession, model: type[Row_], ids: Sequence[str]) -> dict[str, Row_]:
    """The rows of ``model`` with these ids, locked in id order (so two recorders never deadlock) and read
    afresh (another worker or a webhook may have settled them since they were claimed)."""
    id_column: Any = model.id  # type: ignore[attr-defined]
    rows = await session.scalars(
        select(model)
        .where(id_column.in_(list(ids)))
        .order_by(id_column)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in rows}  # type: ignore[attr-defined]


async def record_outcomes(
    sessions: async_sessionmaker[AsyncSession],
    answered: list[Item],
    apply: Callable[[AsyncSession, list[Item]], Awaitable[list[Recorded]]],
    *,
    unrecorded: Recorded,
    what: Callable[[Item], str],
) -> list[Recorded]:
    """``apply`` the outcomes of one pass in one transaction, which keeps the database round trips per
    item near one. If that fails, each outcome is applied again in its own transaction: the item that
    cannot be recorded gets ``unrecorded`` (its lease runs out and the next pass tries it again) and
    the others are recorded. A single outcome that cannot be recorded raises."""
    if not answered:
        return []
    try:
        return await _in_transaction(sessions, answered, apply)
    except Exception:
        if len(answered) == 1:
            raise
        logger.exception("recording %d outcomes together failed; recording them one by one", len(answered))
    recorded: list[Recorded] = []
    for one in answered:
        try:
            recorded += await _in_transaction(sessions, [one], apply)
        except Exception:
            logger.exception("recording the outcome of %s failed", what(one))
            recorded.append(unrecorded)
    return recorded


async def _in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    answered: list[Item],
    apply: Callable[[AsyncSession, list[Item]], Awaitable[list[Recorded]]],
) -> list[Recorded]:
    async with sessions() as session, session.begin():
        return await apply(session, answered)
