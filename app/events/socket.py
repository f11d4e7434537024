"""Real-time delivery: ``GET /v1/ws``, its client frames, resume and replay (the fan-out: app/events/hub.py).

- Resume: ``{"type": "resume", "after_event_id": N}`` replays the visible events after N from the
  database, in order, then continues with live ones; ids already sent are skipped, so the seam has
  neither gap nor duplicate. Live events wait up to ``RESUME_GRACE`` after ``ready`` for the client's
  first frame, so a reconnecting client's resume is served before any live event (an event committed
  just before the reconnect must come after the ones it missed, not ahead of them). ``?after_event_id=N``
  on the URL resumes at once, with no wait.
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
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from app.auth import Actor, TokenDecoder
from app.errors import Unauthenticated
from app.events import service as events
from app.events.connection import CLOSE_TOO_MANY_FRAMES, CLOSE_UNAUTHENTICATED, Connection, Ended
from app.events.hub import REPLAY_PAGE, Hub, render
from app.events.service import reader_key
from app.schemas import EventId, parse_event_id

logger = logging.getLogger("sav.ws")

AUTH_TIMEOUT = 10.0
# How long live events are held after `ready` while the client may still send its resume frame.
RESUME_GRACE = 0.5
CLOSE_BAD_FRAME = 4400


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
