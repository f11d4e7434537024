"""A staff message in a dispute's thread and a path that locks the dispute and then posts in the same thread
(a dispute settled by a promo code tells its buyer the code in the ``operator_buyer`` thread) take their
row locks in the same order, dispute then thread, so on PostgreSQL they never deadlock: the message's
first-response bookkeeping (app/disputes/milestones.py) runs before the thread's row is locked."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth import Actor, Role
from app.db import create_engine
from app.disputes import milestones
from app.disputes.models import Dispute
from app.disputes.promo_notice import tell_buyer
from app.payouts.models import PromoCode
from app.threads import messages
from app.threads.models import Thread
from app.threads.schemas import MessageCreate
from tests.factories import report_dispute, report_order, report_shop

ROUNDS = 12
OPENED = datetime(2035, 1, 10, tzinfo=UTC)  # far from the windows other tests count in
AGENT = Actor(id="agent-locks", role=Role.AGENT, name="Alice")


async def _someone_waits_on_a_lock(engine: AsyncEngine) -> None:
    """Until another transaction of this database waits on a row lock (bounded: 20 s)."""
    for _ in range(400):
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first one's lock")


async def _escalated_dispute_with_buyer_thread(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """An escalated dispute nobody has answered yet (both milestones still to set) and its buyer's thread."""
    async with sessions() as session, session.begin():
        shop = report_shop(session)
        await session.flush()
        order_id = report_order(session, shop, OPENED)
        await session.flush()
        report_dispute(
            session, order_id, shop, OPENED, status="escalated", first_escalated_at=60, first_response_due=3660
        )
        await session.flush()
        dispute_id = await session.scalar(select(Dispute.id).where(Dispute.order_id == order_id))
        assert dispute_id is not None
        thread_id = f"thr-{uuid.uuid4().hex[:12]}"
        session.add(
            Thread(
                id=thread_id,
                audience="operator_buyer",
                subject="About your dispute",
                order_id=order_id,
                buyer_id="buyer-kpi",
                dispute_id=dispute_id,
                created_by="system",
            )
        )
    return dispute_id, thread_id


async def _staff_message(sessions: async_sessionmaker[AsyncSession], thread_id: str) -> None:
    async with sessions() as session, session.begin():
        await messages.post_message(
            session,
            actor=AGENT,
            thread_id=thread_id,
            data=MessageCreate(body="We are looking into it."),
            on_dispute_message=milestones.message_posted,
        )


async def _lock_dispute(session: AsyncSession, dispute_id: str) -> Dispute:
    """What settling a dispute does first (app/disputes/resolution.py): its row, locked."""
    dispute = await session.get(Dispute, dispute_id, with_for_update=True, populate_existing=True)
    assert dispute is not None
    return dispute


async def _tell_the_code(session: AsyncSession, dispute: Dispute) -> None:
    """Then the promo code granted for it is posted to the buyer, in the dispute's operator_buyer thread."""
    promo = PromoCode(
        code=f"P{uuid.uuid4().hex[:9].upper()}",
        buyer_id=dispute.buyer_id,
        amount=500,
        currency="EUR",
        expires_at=OPENED + timedelta(days=90),
    )
    await tell_buyer(session, promo, dispute.id, dispute.order_id)


async def _settle(sessions: async_sessionmaker[AsyncSession], dispute_id: str) -> None:
    async with sessions() as session, session.begin():
        await _tell_the_code(session, await _lock_dispute(session, dispute_id))


async def _outcome(sessions: async_sessionmaker[AsyncSession], dispute_id: str, thread_id: str) -> tuple[int, bool]:
    async with sessions() as session:
        count = await session.scalar(select(Thread.message_count).where(Thread.id == thread_id))
        dispute = await session.get(Dispute, dispute_id)
        assert dispute is not None
        answered = dispute.first_response_at is not None and dispute.first_operator_response_at is not None
        return int(count or 0), answered


def test_a_staff_message_and_a_settlement_posting_in_the_same_thread_never_deadlock(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: the two cannot hold row locks at once there")

    async def scenario() -> list[tuple[int, bool]]:
        engine = create_engine(db_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        outcomes = []
        try:
            for _ in range(ROUNDS):
                # The settlement holds the dispute's lock while the staff message starts: the message waits
                # for it (before locking the thread), then the settlement posts in the thread and commits.
                dispute_id, thread_id = await _escalated_dispute_with_buyer_thread(sessions)
                async with sessions() as session, session.begin():
                    dispute = await _lock_dispute(session, dispute_id)
                    message = asyncio.create_task(_staff_message(sessions, thread_id))
                    await _someone_waits_on_a_lock(engine)
                    await _tell_the_code(session, dispute)
                await message
                outcomes.append(await _outcome(sessions, dispute_id, thread_id))
                # And the two started together, in either order.
                dispute_id, thread_id = await _escalated_dispute_with_buyer_thread(sessions)
                await asyncio.gather(_staff_message(sessions, thread_id), _settle(sessions, dispute_id))
                outcomes.append(await _outcome(sessions, dispute_id, thread_id))
        finally:
            await engine.dispose()
        return outcomes

    # Every round: both messages are in the thread and the staff message answered the dispute.
    assert asyncio.run(scenario()) == [(2, True)] * (2 * ROUNDS)
