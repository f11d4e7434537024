"""The worker's housekeeping: events past their retention and stale idempotency keys are pruned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, insert, select

from app.db import create_engine, utcnow
from app.events.models import Event
from app.idempotency import IdempotencyRecord
from app.worker import Job, Worker
from tests.factories import uid


def test_old_events_and_keys_are_pruned_and_recent_ones_kept(db_url: str) -> None:
    marker = uid("prune")

    async def scenario() -> tuple[int, int, dict[str, int]]:
        engine = create_engine(db_url)
        try:
            now = utcnow()
            async with engine.begin() as conn:
                for age in (timedelta(days=8), timedelta(hours=1)):
                    await conn.execute(
                        insert(Event).values(
                            type="message.created",
                            resource_kind="thread:internal",
                            thread_id=marker,
                            actor="a",
                            payload="{}",
                            created_at=now - age,
                        )
                    )
                    await conn.execute(
                        insert(IdempotencyRecord).values(
                            actor_id=marker,
                            key=str(age),
                            fingerprint="f",
                            status_code=201,
                            body=b"{}",
                            created_at=now - age * 3,
                        )
                    )
            done = await Worker(engine, poll_seconds=1).run_due()
            async with engine.connect() as conn:
                events_left = await conn.scalar(select(func.count()).where(Event.thread_id == marker))
                keys_left = await conn.scalar(
                    select(func.count()).select_from(IdempotencyRecord).where(IdempotencyRecord.actor_id == marker)
                )
            return int(events_left or 0), int(keys_left or 0), done
        finally:
            await engine.dispose()

    events_left, keys_left, done = asyncio.run(scenario())
    assert (events_left, keys_left) == (1, 1)
    assert done["prune-events"] >= 1
    assert done["prune-idempotency-keys"] >= 1


def test_a_failing_job_does_not_stop_the_others(db_url: str) -> None:
    async def boom(_: object) -> int:
        raise RuntimeError("boom")

    async def ok(_: object) -> int:
        return 7

    async def scenario() -> dict[str, int]:
        engine = create_engine(db_url)
        try:
            worker = Worker(engine, poll_seconds=1, jobs=[Job("boom", 60, boom), Job("ok", 60, ok)])
            return await worker.run_due()
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == {"ok": 7}


def test_jobs_run_again_only_when_due(db_url: str) -> None:
    calls: list[int] = []

    async def count(_: object) -> int:
        calls.append(1)
        return 0

    async def scenario() -> None:
        engine = create_engine(db_url)
        try:
            worker = Worker(engine, poll_seconds=1, jobs=[Job("count", 60, count)])
            await worker.run_due(now=1000.0)
            await worker.run_due(now=1030.0)
            await worker.run_due(now=1061.0)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert len(calls) == 2
