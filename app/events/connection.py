"""One WebSocket connection's state and limits: its bounded queue, its token's expiry, the budget of
frames its client may send, the resume it asked for and not yet got, and why the server ends it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

from litestar import WebSocket

from app.auth import Actor

QUEUE_SIZE = 1_000
CLOSE_UNAUTHENTICATED = 4401  # a bad token, or the token expired
CLOSE_TOO_SLOW = 4429
CLOSE_TOO_MANY_FRAMES = 1008  # RFC 6455 "policy violation": the client sent frames faster than allowed
# Client frames per connection: a burst, then a steady rate. A well-behaved client sends a handful (auth,
# a resume after a reconnect, a ping every ~30 s); each frame may cost a reply or a replay.
FRAME_BURST = 20
FRAME_RATE = 2.0  # frames per second, refilled continuously


@dataclass
class FrameBudget:
    """A token bucket over the frames a client sends."""

    burst: float = FRAME_BURST
    rate: float = FRAME_RATE
    tokens: float = FRAME_BURST
    at: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Ended(Exception):
    """Raised in a connection's tasks once the server has decided to close it (``Connection.end``)."""


@dataclass(eq=False)
class Connection:
    socket: WebSocket[Any, Any, Any]
    actor: Actor
    reader: str
    queue: asyncio.Queue[tuple[int, bytes]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    last_sent: int = 0
    # The token's exp (Unix seconds): nothing is sent from then on.
    expires_at: float = math.inf
    # Set (with `closing`: close code, error code or "", reason) when the server decides to close: the queue
    # overflowed, the token expired, the client flooded. The handler then closes. Closing from outside the
    # sender matters: the sender may be stuck writing to a client that reads nothing.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    closing: tuple[int, str, str] | None = None
    # Set by the first frame the client sends after `ready` (a resume is recorded before it is set).
    spoke: asyncio.Event = field(default_factory=asyncio.Event)
    # The resume not yet served (after_event_id); a newer resume replaces it.
    resume_after: int | None = None
    frames: FrameBudget = field(default_factory=FrameBudget)

    def end(self, code: int, error: str, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, error, reason)
            self.ended.set()

    def expired(self) -> bool:
        if time.time() < self.expires_at:
            return False
        self.end(CLOSE_UNAUTHENTICATED, "auth.expired_token", "the token has expired: reconnect with a new one")
        return True

    def request_resume(self, after: int) -> None:
        """Record a resume (replacing one not yet served) and wake the sender if it was idle."""
        idle = self.resume_after is None
        self.resume_after = after
        if idle:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait((-1, b""))  # a nudge so the resume is served
