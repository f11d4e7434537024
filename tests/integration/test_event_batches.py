"""Events appended inside ``events.batched`` are inserted together when the block ends: in the order
appended, in the caller's transaction, numbered after its commit like any other; none for a rollback."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_engine
from app.events import service as events
from app.events.models import Event
from tests.factories import uid


async def _append(session: AsyncSession, marker: str, n: int) -> None:
    await events.append(
        session,
        type="payout.updated",
        kind="payout",
        buyer_id=None,
        seller_id=marker,
        thread_id=None,
        actor="system",
        payload={"n": n},
    )


def test_a_batch_is_inserted_when_its_block_ends_in_order_and_numbered_after_commit(db_url: str) -> None:
    marker = uid("batch")

    async def scenario() -> tuple[int, int, list[str], list[int | None], bool]:
        engine = create_engine(db_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        count = select(func.count()).select_from(Event).where(Event.seller_id == marker)
        try:
            async with sessions() as session, session.begin():
                async with events.batched(session):
                    for n in range(5):
                        await _append(session, marker, n)
                    async with events.batched(session):  # nested: still one insert, by the outer block
                        await _append(session, marker, 5)
                    inside = int(await session.scalar(count) or 0)
                after_block = int(await session.scalar(count) or 0)
                marked = bool(session.info.get("events_appended"))
            await events.sequence_committed(engine)
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(Event.payload, Event.seq).where(Event.seller_id == marker).order_by(Event.id)
                    )
                ).all()
            return inside, after_block, [r.payload for r in rows], [r.seq for r in rows], marked
        finally:
            await engine.dispose()

    inside, after_block, payloads, seqs, marked = asyncio.run(scenario())
    assert (inside, after_block) == (0, 6)
    assert marked  # the hub is told after the commit, as for a single append
    assert payloads == [f'{{"n":{n}}}' for n in range(6)]
    assert all(seq is not None for seq in seqs)
    assert seqs == sorted(seqs)  # numbered in the order appended


def test_a_block_left_by_an_exception_inserts_nothing(db_url: str) -> None:
    marker = uid("batch")

    async def scenario() -> tuple[int, bool]:
        engine = create_engine(db_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:

            async def failing_pass(session: AsyncSession) -> None:
                async with session.begin(), events.batched(session):
                    await _append(session, marker, 0)
                    raise RuntimeError("the pass failed")

            async with sessions() as session:
                with pytest.raises(RuntimeError, match="the pass failed"):
                    await failing_pass(session)
                still_batching = events._BATCHED in session.info
            async with engine.connect() as conn:
                left = await conn.scalar(select(func.count()).select_from(Event).where(Event.seller_id == marker))
            return int(left or 0), still_batching
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == (0, False)
