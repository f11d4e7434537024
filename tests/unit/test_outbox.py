"""The leased outbox's pure parts: backoff, and recording a pass's outcomes together or one by one."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app import outbox


def test_backoff_doubles_from_the_first_delay_up_to_the_cap() -> None:
    delays = [outbox.backoff(n, first_seconds=10, max_seconds=60) for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (10, 20, 40, 60, 60)]


def test_jitter_adds_at_most_its_fraction() -> None:
    for attempt in range(1, 10):
        base = outbox.backoff(attempt, first_seconds=30, max_seconds=3600)
        jittered = outbox.backoff(attempt, first_seconds=30, max_seconds=3600, jitter=0.1)
        assert base <= jittered <= base * 1.1


def record(items: list[str]) -> list[str]:
    """Record ``items`` with an ``apply`` that fails on any batch holding "bad"."""

    async def run() -> list[str]:
        engine = create_async_engine("sqlite+aiosqlite://")
        try:
            sessions = async_sessionmaker(engine)

            async def apply(session: AsyncSession, batch: list[str]) -> list[str]:
                if "bad" in batch:
                    raise RuntimeError("cannot record this one")
                return [f"recorded {item}" for item in batch]

            return await outbox.record_outcomes(sessions, items, apply, unrecorded="pending", what=str)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_pass_is_recorded_in_one_go() -> None:
    assert record(["a", "b"]) == ["recorded a", "recorded b"]


def test_one_outcome_that_cannot_be_recorded_does_not_hold_back_the_others() -> None:
    assert record(["a", "bad", "b"]) == ["recorded a", "pending", "recorded b"]


def test_a_single_outcome_that_cannot_be_recorded_raises() -> None:
    with pytest.raises(RuntimeError):
        record(["bad"])
