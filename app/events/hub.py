"""Real-time delivery: ``GET /v1/ws`` and the per-process hub that fans events out.

- The database event log is the source of truth. The broker (Litestar channels: memory, Redis or
  PostgreSQL LISTEN/NOTIFY) only carries "new events were committed"; each process then reads the new
  rows once and hands each event to the connections whose actor may see it, found through indexes by
  buyer, by shop and for operator staff, then confirmed by the policy. Work per event is proportional to
  its watchers, not to all connections.
- Resume: ``{"type": "resume", "after_event_id": N}`` replays the visible events after N from the
  database, in order, then continues with live ones; ids already sent are skipped, so the seam has
  neither gap nor duplicate. Live events wait up to ``RESUME_GRACE`` after ``ready`` for the client's
  first frame, so a reconnecting client's resume is served before any live event (an event committed
  just before the reconnect must come after the ones it missed, not ahead of them). ``?after_event_id=N``
  on the URL resumes at once, with no wait.
- Back-pressure: each connection has a bounded queue; a consumer too slow to keep it from filling is
  closed with code 4429 and resumes from its last event id. Nobody else waits for it.
- A connection lives as long as its token: a timer closes it with 4401 at the token's ``exp``, and no
  frame is written after it (each send checks). Client frames are rate-limited per connection (a token
  bucket; over it: close 1008), and resumes are coalesced: a resume not yet served is replaced by a newer
  one, so a flood of resumes costs at most one replay at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.exceptions import WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import Actor, TokenDecoder
from app.errors import Unauthenticated
from app.events import notify
from app.events import service as events
from app.events.connection import (
    CLOSE_TOO_MANY_FRAMES,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHENTICATED,
    QUEUE_SIZE,
    Connection,
    Ended,
)
from app.events.service import reader_key
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed, relations_for
from app.schemas import EventId, parse_event_id

logger = logging.getLogger("sav.ws")

CHANNEL = "sav-events"
REPLAY_PAGE = 500
# After a catch-up that found events, wait this long before the next: under load, commits arriving in the
# meantime are numbered and fanned out together (one sequencer transaction for many events).
BATCH_WINDOW = 0.003
AUTH_TIMEOUT = 10.0
# How long live events are held after `ready` while the client may still send its resume frame.
RESUME_GRACE = 0.5
CLOSE_BAD_FRAME = 4400

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


class ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class AuthFrame(ClientFrame, tag="auth"):
    token: str


class ResumeFrame(ClientFrame, tag="resume"):
    after_event_id: EventId


class PingFrame(ClientFrame, tag="ping"):
    pass


_frames = msgspec.json.Decoder(AuthFrame | ResumeFrame | PingFrame)


async def _authenticate(socket: WebSocket[Any, Any, Any], decoder: TokenDecoder) -> tuple[Actor, float] | None:
    token = socket.query_params.get("token")
    try:
        if token is None:
            raw = await asyncio.wait_for(socket.receive_data(mode="text"), timeout=AUTH_TIMEOUT)
            frame = _frames.decode(raw)
            if not isinstance(frame, AuthFrame):
                raise Unauthenticated('the first frame must be {"type": "auth", "token": ...}')
            token = frame.token
        return decoder.decode_with_expiry(token)
    except (Unauthenticated, msgspec.DecodeError, TimeoutError) as exc:
        reason = exc.detail if isinstance(exc, Unauthenticated) else "authentication required"
        code = exc.code if isinstance(exc, Unauthenticated) else "auth.invalid_token"
        await socket.send_json({"type": "error", "code": code, "detail": reason})
        await socket.close(code=CLOSE_UNAUTHENTICATED, reason="unauthenticated")
        return None


async def _send(connection: Connection, event_id: int, data: bytes) -> None:
    if connection.expired():  # checked at each send: the timer may fire late, this may not
        raise Ended
    await connection.socket.send_data(data, mode="text")
    connection.last_sent = event_id


async def _replay(connection: Connection, hub: Hub, after: int) -> None:
    while True:
        async with hub.engine.connect() as conn:
            rows = await events.visible_after(
                conn, actor=connection.actor, reader=connection.reader, after=after, limit=REPLAY_PAGE
            )
        for row in rows:
            data = hub.personalize(row, connection)
            await _send(connection, row.seq, data or render(row.seq, row.type, row.payload))
            after = row.seq
        if len(rows) < REPLAY_PAGE:
            return


async def _send_live(connection: Connection, hub: Hub) -> None:
    if connection.resume_after is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.spoke.wait(), RESUME_GRACE)
    while True:
        item = await connection.queue.get()
        while connection.resume_after is not None:
            # Rewind to what the client says it has, replay from the log, then carry on with live events
            # newer than the replay (older ones are skipped below): strictly increasing ids, no gap. A
            # resume received meanwhile replaced any earlier unserved one, and is served next.
            after, connection.resume_after = connection.resume_after, None
            connection.last_sent = after
            await _replay(connection, hub, after)
        if item == (-1, b""):
            continue  # a nudge so a pending resume is served
        event_id, data = item
        if event_id <= connection.last_sent:
            continue  # already sent by a replay
        await _send(connection, event_id, data)


async def _receive(connection: Connection) -> None:
    while True:
        raw = await connection.socket.receive_data(mode="text")
        if connection.expired():
            raise Ended
        if not connection.frames.take():
            connection.end(CLOSE_TOO_MANY_FRAMES, "ws.too_many_frames", "too many frames: slow down")
            raise Ended
        try:
            frame = _frames.decode(raw)
        except msgspec.DecodeError as exc:
            await connection.socket.send_json({"type": "error", "code": "validation_error", "detail": str(exc)})
            continue
        if isinstance(frame, ResumeFrame):
            connection.request_resume(max(frame.after_event_id, 0))
        elif isinstance(frame, PingFrame):
            await connection.socket.send_json({"type": "pong"})
        connection.spoke.set()


@websocket("/v1/ws", opt={"exclude_from_auth": True})
async def events_socket(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    state = socket.app.state
    authenticated = await _authenticate(socket, state.token_decoder)
    if authenticated is None:
        return
    actor, expires_at = authenticated
    hub: Hub = state.hub
    connection = Connection(
        socket=socket,
        actor=actor,
        reader=reader_key(actor),
        queue=asyncio.Queue(hub.queue_size),
        expires_at=expires_at,
    )
    connection.last_sent = hub.last_id
    hub.add(connection)
    timer = asyncio.get_running_loop().call_later(max(expires_at - time.time(), 0.0), connection.expired)
    after = socket.query_params.get("after_event_id")
    try:
        await socket.send_json({"type": "ready", "last_event_id": hub.last_id})
        if after is not None and (start := parse_event_id(after)) is not None:
            connection.request_resume(start)  # the sender replays before anything live
        elif after is not None:
            detail = f"after_event_id must be a non-negative integer, not {after!r}"
            await socket.send_json({"type": "error", "code": "validation_error", "detail": detail})
        sender = asyncio.create_task(_send_live(connection, hub))
        receiver = asyncio.create_task(_receive(connection))
        ended = asyncio.create_task(connection.ended.wait())
        done, pending = await asyncio.wait({sender, receiver, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        done.discard(ended)
        if connection.closing is not None:
            await _close(connection, *connection.closing)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | Ended):
                logger.warning("websocket ended with %r", exc)
    finally:
        timer.cancel()
        hub.remove(connection)


async def _close(connection: Connection, code: int, error: str, reason: str) -> None:
    """The close frame queues behind the frames already written. A client that never reads again is
    dropped by uvicorn: its close timer, or its keepalive ping going unanswered."""
    with contextlib.suppress(Exception):
        if error:  # not for a client too slow to read it
            await asyncio.wait_for(connection.socket.send_json({"type": "error", "code": error, "detail": reason}), 1)
        await connection.socket.close(code=code, reason=reason)
