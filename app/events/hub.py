"""The per-process hub: follows the event log and fans each event out to the local WebSocket connections
that may see it (``GET /v1/ws`` itself, its client frames and resumes: app/events/socket.py).

- The database event log is the source of truth. The broker (Litestar channels: memory, Redis or
  PostgreSQL LISTEN/NOTIFY) only carries "new events were committed"; each process then reads the new
  rows once and hands each event to the connections whose actor may see it, found through indexes by
  buyer, by shop and for operator staff, then confirmed by the policy. Work per event is proportional to
  its watchers, not to all connections.
- Back-pressure: each connection has a bounded queue; a consumer too slow to keep it from filling is
  closed with code 4429 and resumes from its last event id. Nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar.channels import ChannelsPlugin
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import Actor
from app.events import notify
from app.events import service as events
from app.events.connection import CLOSE_TOO_SLOW, QUEUE_SIZE, Connection
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, relations_for

logger = logging.getLogger("sav.ws")

CHANNEL = "sav-events"
REPLAY_PAGE = 500
# After a catch-up that found events, wait this long before the next: under load, commits arriving in the
# meantime are numbered and fanned out together (one sequencer transaction for many events).
BATCH_WINDOW = 0.003

# Event data that differs by reader beyond the event's visibility (a refund's promo code is not shown to
# shops): given the reader and the stored data, the data to send, or None to send it as stored.
Personalizer = Callable[[Actor, dict[str, Any], Resource], dict[str, Any] | None]


class Hub:
    """One per process: follows the event log and fans events out to local connections."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: ChannelsPlugin,
        poll_seconds: float,
        queue_size: int = QUEUE_SIZE,
        personalizers: Mapping[str, Personalizer] | None = None,
    ) -> None:
        self.engine = engine
        self.personalizers = dict(personalizers or {})
        self.queue_size = queue_size
        self.channels = channels
        self.poll_seconds = poll_seconds
        self.last_id = 0
        self._by_buyer: dict[str, set[Connection]] = defaultdict(set)
        self._by_shop: dict[str, set[Connection]] = defaultdict(set)
        self._by_role: dict[str, set[Connection]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self.engine.connect() as conn:
            self.last_id = await events.latest_id(conn)
        notify.register(self.engine.sync_engine, self.committed)
        subscriber = await self.channels.subscribe([CHANNEL])
        self._tasks = [
            asyncio.create_task(self._listen(subscriber), name="hub-listen"),
            asyncio.create_task(self._follow(), name="hub-follow"),
        ]

    async def stop(self) -> None:
        notify.unregister(self.engine.sync_engine)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- notifications ---------------------------------------------------------------------------------

    def committed(self) -> None:
        """Called right after a local commit that appended events (possibly many times in a burst)."""
        self._wake.set()

    async def _listen(self, subscriber: Any) -> None:
        async for _ in subscriber.iter_events():
            self._wake.set()

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()
            try:
                if await self._catch_up():
                    await asyncio.sleep(BATCH_WINDOW)
            except Exception:  # a database hiccup must not kill the hub; the next wake-up retries
                logger.exception("could not read the event log")
                await asyncio.sleep(self.poll_seconds)

    async def _catch_up(self) -> int:
        """Number what committed, then fan out what is numbered. Returns how many events were handled."""
        numbered = await events.sequence_committed(self.engine)
        if numbered is None:
            asyncio.get_running_loop().call_later(BATCH_WINDOW, self._wake.set)
        elif numbered:
            # One broker message per batch numbered; the other processes then read the log themselves.
            self.channels.publish(b"1", [CHANNEL])
        handled = 0
        while True:
            async with self.engine.connect() as conn:
                rows = await events.all_after(conn, after=self.last_id, limit=REPLAY_PAGE)
            for row in rows:
                self._dispatch(row)
                self.last_id = row.seq
            handled += len(rows)
            if len(rows) < REPLAY_PAGE:
                return handled

    # --- fan-out ---------------------------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        actor = connection.actor
        self._by_role[actor.role.value].add(connection)
        self._by_buyer[actor.id].add(connection)
        if actor.seller_id:
            self._by_shop[actor.seller_id].add(connection)

    def remove(self, connection: Connection) -> None:
        actor = connection.actor
        self._by_role[actor.role.value].discard(connection)
        self._by_buyer[actor.id].discard(connection)
        if actor.seller_id:
            self._by_shop[actor.seller_id].discard(connection)

    def _candidates(self, row: Any) -> set[Connection]:
        """Connections that may possibly see an event, from the policy's relations for its kind."""
        found: set[Connection] = set()
        for role, connections in self._by_role.items():
            if not connections:
                continue
            relations = relations_for(role, row.resource_kind, "read")
            if "any" in relations:
                found |= connections
            if "buyer" in relations and row.buyer_id:
                found |= {c for c in self._by_buyer.get(row.buyer_id, ()) if c.actor.role.value == role}
            if "seller" in relations and row.seller_id:
                found |= {c for c in self._by_shop.get(row.seller_id, ()) if c.actor.role.value == role}
        return found

    def _dispatch(self, row: Any) -> None:
        resource = Resource(kind=row.resource_kind, buyer_id=row.buyer_id or "", seller_id=row.seller_id or "")
        frame: bytes | None = None
        for connection in self._candidates(row):
            if row.recipient is not None and connection.reader != row.recipient:
                continue
            if not is_allowed(connection.actor, resource, "read"):
                continue
            if frame is None:
                frame = render(row.seq, row.type, row.payload)
            data = self.personalize(row, connection) or frame
            try:
                connection.queue.put_nowait((row.seq, data))
            except asyncio.QueueFull:
                self.remove(connection)  # nothing more is offered to it; it resumes from the log
                connection.end(CLOSE_TOO_SLOW, "", "too slow: resume from your last event id")

    def personalize(self, row: Any, connection: Connection) -> bytes | None:
        """The frame of an event whose data differs for this reader, or None when the shared one fits."""
        personalizer = self.personalizers.get(row.type)
        if personalizer is None:
            return personalize(row, connection)
        resource = Resource(kind=row.resource_kind, buyer_id=row.buyer_id or "", seller_id=row.seller_id or "")
        data = personalizer(connection.actor, msgspec.json.decode(row.payload), resource)
        return None if data is None else render(row.seq, row.type, msgspec.json.encode(data).decode())


def render(event_id: int, event_type: str, payload: str) -> bytes:
    return b'{"event_id":%d,"type":%s,"data":%s}' % (
        event_id,
        msgspec.json.encode(event_type),
        payload.encode(),
    )


def personalize(row: Any, connection: Connection) -> bytes | None:
    """The few events whose data differs by reader: a new thread is not unread for its opener; a message
    by operator staff and a dispute show each reader only the parts the policy lets it see (staff ids,
    funding: app/permissions/disclosure.py)."""
    if row.type == "thread.created" and row.actor == connection.reader:
        data = msgspec.json.decode(row.payload)
        data["unread_count"] = 0
        return render(row.seq, row.type, msgspec.json.encode(data).decode())
    if row.type == "message.created" and not disclosure.sees_staff_ids(connection.actor):
        message = msgspec.json.decode(row.payload)
        author = message.get("author") or {}
        shown = disclosure.message_author(connection.actor, author)
        if shown is author:
            return None
        return render(row.seq, row.type, msgspec.json.encode({**message, "author": shown}).decode())
    if row.type == "dispute.updated":
        summary = msgspec.json.decode(row.payload)
        shown = disclosure.dispute_summary(connection.actor, summary)
        return None if shown is summary else render(row.seq, row.type, msgspec.json.encode(shown).decode())
    return None
