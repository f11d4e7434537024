"""Append events with the change, number them after commit, read them back for resume, prune them.

Ordering: the public ``event_id`` must grow in commit order, or a client that saw event 11 could later
miss an event 10 that committed after it. An id taken at insert time does not guarantee that (two
transactions can commit in the other order), and a global lock on every write would serialize the
service. So rows are inserted unnumbered, and a *sequencer* numbers committed rows afterwards, one
sequencer at a time (an advisory lock on PostgreSQL, the write lock on SQLite): a row that commits later
is numbered later. Only numbered events are delivered or replayed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.auth import Actor
from app.db import utcnow
from app.events.models import Event
from app.permissions.visibility import visible_resources

RETENTION = timedelta(days=7)
SEQUENCER_LOCK = 7_431_001  # any constant: one sequencer at a time across processes (PostgreSQL)
SEQUENCE_BATCH = 1_000
_BATCHED = "sav.events.batched"  # session.info key: the rows ``append`` collects inside ``batched``
THREAD_KINDS = [f"thread:{a}" for a in ("tripartite", "buyer_seller", "operator_seller", "operator_buyer", "internal")]
# Every kind of resource events are about; the policy's read lines for each say who receives them.
# A refund is read by whoever may read its order; a payout by its shop, finance and admins.
EVENT_KINDS = [*THREAD_KINDS, "dispute", "order", "payout"]

_events: Table = Event.__table__  # type: ignore[assignment]
_INSERT = insert(_events)
_TRY_LOCK_PG = text(f"SELECT pg_try_advisory_xact_lock({SEQUENCER_LOCK})")
# Number the oldest unnumbered committed rows in insertion order, after the highest number given so far.
_SEQUENCE = text(
    """
    UPDATE events SET seq = numbered.n
      FROM (SELECT id, (SELECT COALESCE(MAX(seq), 0) FROM events) + ROW_NUMBER() OVER (ORDER BY id) AS n
              FROM events WHERE seq IS NULL ORDER BY id LIMIT :batch) AS numbered
     WHERE events.id = numbered.id
    """
)


def encode(payload: Any) -> str:
    return msgspec.json.encode(payload).decode()


async def append(
    session: AsyncSession,
    *,
    type: str,
    kind: str,
    buyer_id: str | None,
    seller_id: str | None,
    thread_id: str | None,
    actor: str,
    payload: Any,
    recipient: str | None = None,
    now: datetime | None = None,
) -> None:
    row = {
        "type": type,
        "resource_kind": kind,
        "buyer_id": buyer_id,
        "seller_id": seller_id,
        "thread_id": thread_id,
        "actor": actor,
        "recipient": recipient,
        "payload": encode(payload),
        "created_at": now or utcnow(),
    }
    collected: list[dict[str, Any]] | None = session.info.get(_BATCHED)
    if collected is not None:
        collected.append(row)
        return
    connection = await session.connection()
    await connection.execute(_INSERT, row)
    session.info["events_appended"] = True


@asynccontextmanager
async def batched(session: AsyncSession) -> AsyncIterator[None]:
    """Inside the block, ``append`` collects its rows; leaving it inserts them all in one statement, in
    the order appended and in the caller's transaction (a worker pass announcing fifty payouts makes one
    round trip, not fifty). Numbering is unchanged: the rows are still inserted unnumbered before the
    commit, and the sequencer numbers them after it. Leave the block before the transaction ends; on an
    exception nothing is inserted (the transaction is rolling back anyway)."""
    if session.info.get(_BATCHED) is not None:  # nested: the outer block inserts
        yield
        return
    collected: list[dict[str, Any]] = []
    session.info[_BATCHED] = collected
    try:
        yield
    finally:
        session.info.pop(_BATCHED, None)
    if collected:
        connection = await session.connection()
        await connection.execute(_INSERT, collected)
        session.info["events_appended"] = True


async def sequence_committed(engine: AsyncEngine) -> int | None:
    """Give event_ids to committed, unnumbered events. Returns how many, or None when another process
    holds the sequencer right now (it may have started before our commit: try again shortly)."""
    numbered = 0
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql" and not await conn.scalar(_TRY_LOCK_PG):
            return None
        while True:
            result = await conn.execute(_SEQUENCE, {"batch": SEQUENCE_BATCH})
            count = int(result.rowcount or 0)
            numbered += count
            if count < SEQUENCE_BATCH:
                return numbered


def reader_key(actor: Actor) -> str:
    """Who reads: an event sent to one reader (``recipient``), a read cursor and an upload belong to a
    person (a shop's members each have their own)."""
    return actor.key


def visible_events(actor: Actor, reader: str) -> Any:
    return visible_resources(
        actor,
        kind=Event.resource_kind,
        buyer_id=Event.buyer_id,
        seller_id=Event.seller_id,
        kinds={k: k for k in EVENT_KINDS},
    ) & ((Event.recipient.is_(None)) | (Event.recipient == reader))


async def visible_after(connection: AsyncConnection, *, actor: Actor, reader: str, after: int, limit: int) -> list[Any]:
    rows = await connection.execute(
        select(Event.seq, Event.type, Event.actor, Event.payload, Event.resource_kind, Event.buyer_id, Event.seller_id)
        .where(Event.seq > after, visible_events(actor, reader))
        .order_by(Event.seq)
        .limit(limit)
    )
    return list(rows.all())


async def all_after(connection: AsyncConnection, *, after: int, limit: int) -> list[Any]:
    rows = await connection.execute(select(_events).where(_events.c.seq > after).order_by(_events.c.seq).limit(limit))
    return list(rows.all())


async def latest_id(connection: AsyncConnection) -> int:
    return int(await connection.scalar(select(func.max(Event.seq))) or 0)


async def prune(session: AsyncSession, *, now: datetime | None = None) -> int:
    result = await session.execute(delete(Event).where(Event.created_at < (now or utcnow()) - RETENTION))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
