"""The WebSocket's per-connection limits, without a server: the frame budget and resume coalescing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.auth import Actor, Role
from app.events.connection import CLOSE_UNAUTHENTICATED, FRAME_BURST, FRAME_RATE, Connection, FrameBudget


def connection(**fields: Any) -> Connection:
    return Connection(socket=None, actor=Actor(id="b", role=Role.BUYER), reader="b", **fields)  # type: ignore[arg-type]


def test_the_frame_budget_allows_a_burst_then_the_steady_rate() -> None:
    budget = FrameBudget(at=100.0)
    assert all(budget.take(now=100.0) for _ in range(FRAME_BURST))
    assert not budget.take(now=100.0)
    assert budget.take(now=100.0 + 1 / FRAME_RATE)  # one more frame per 1/rate seconds
    assert not budget.take(now=100.0 + 1 / FRAME_RATE)
    # Idle time refills up to the burst, never beyond.
    assert sum(budget.take(now=10_000.0) for _ in range(FRAME_BURST * 2)) == FRAME_BURST


def test_a_resume_not_yet_served_is_replaced_by_a_newer_one_with_one_wake_up() -> None:
    conn = connection(queue=asyncio.Queue(10))
    for after in (5, 0, 42):
        conn.request_resume(after)
    assert conn.resume_after == 42
    assert conn.queue.qsize() == 1
    conn.resume_after = None  # the sender took it
    conn.request_resume(7)
    assert (conn.resume_after, conn.queue.qsize()) == (7, 2)


def test_a_connection_past_its_tokens_exp_ends_with_4401_and_the_first_reason_wins() -> None:
    alive = connection(expires_at=time.time() + 3600)
    assert not alive.expired()
    assert alive.closing is None
    gone = connection(expires_at=time.time() - 1)
    assert gone.expired()
    assert gone.closing is not None
    assert gone.closing[:2] == (CLOSE_UNAUTHENTICATED, "auth.expired_token")
    gone.end(4429, "", "too slow")
    assert gone.closing[0] == CLOSE_UNAUTHENTICATED
    assert gone.ended.is_set()
