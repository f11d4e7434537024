"""The background worker: what runs without anyone asking.

Dispute timers, outbound webhook deliveries, and housekeeping (old events, stale idempotency keys).
Runs inside the server when ``SAV_RUN_WORKER=true`` (the embedded default), or on its own as
``sav worker``. Every job is safe to run from several workers at once (timers and deliveries take their
rows with SKIP LOCKED; pruning is plain deletes), and a worker that dies loses nothing: due work is
found again on the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import idempotency
from app.disputes import service as disputes
from app.events import service as events
from app.payouts import settlement
from app.payouts.gateway import PaymentGateway
from app.payouts.reactions import Reactions
from app.payouts.stripe_escrow import StripeEscrow
from app.settings import Settings
from app.webhooks import service as webhooks

logger = logging.getLogger("sav.worker")
REFUND_BATCHES_PER_PASS = 20


@dataclass
class Job:
    name: str
    every_seconds: float
    # Called with a session inside one transaction; or, when ``own_transactions``, with the session
    # factory, for jobs that must commit before doing something slow (a webhook's HTTP call).
    run: Callable[[Any], Awaitable[int]]
    last_run: float = 0.0
    own_transactions: bool = False


def escrow_gateway(settings: Settings) -> PaymentGateway | None:
    """The payment provider, when one is configured (``SAV_STRIPE_API_KEY``). Without it refunds are
    granted and stay pending until a worker with a key runs."""
    if not settings.stripe_api_key:
        return None
    return StripeEscrow(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base)


def default_jobs(settings: Settings | None = None, reactions: Reactions | None = None) -> list[Job]:
    """The jobs to run. ``reactions`` are what a settled refund makes other domains do (app/main.py
    builds them); a worker that pays refunds needs them."""
    jobs = [
        Job("prune-events", 3600, events.prune),
        Job("prune-idempotency-keys", 3600, idempotency.prune_expired),
    ]
    if settings is not None:

        async def dispute_timers(session: AsyncSession) -> int:
            return await disputes.fire_due_timers(session, settings=settings)

        jobs.append(Job("dispute-timers", settings.worker_poll_seconds, dispute_timers))
        policy = webhooks.Policy.from_settings(settings)

        async def deliver_webhooks(sessions: async_sessionmaker[AsyncSession]) -> int:
            return await webhooks.deliver_due(sessions, policy=policy)

        jobs.append(Job("deliver-webhooks", settings.worker_poll_seconds, deliver_webhooks, own_transactions=True))
        gateway = escrow_gateway(settings)
        if gateway is not None:
            if reactions is None:
                raise ValueError("a worker that pays refunds needs the reactions app.main builds (money_reactions)")
            on_settled = reactions.refund_settled

            async def pay_refunds(sessions: async_sessionmaker[AsyncSession]) -> int:
                # A full batch means more are due: keep going (bounded, so other jobs get their turn)
                # instead of waiting a poll interval between batches.
                paid = 0
                for _ in range(REFUND_BATCHES_PER_PASS):
                    done = await settlement.pay_due(
                        sessions,
                        gateway=gateway,
                        on_settled=on_settled,
                        lease=timedelta(seconds=settings.refund_lease_seconds),
                    )
                    paid += done
                    if done < settlement.BATCH:
                        break
                return paid

            jobs.append(Job("pay-refunds", settings.worker_poll_seconds, pay_refunds, own_transactions=True))
    return jobs


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        poll_seconds: float,
        jobs: list[Job] | None = None,
        settings: Settings | None = None,
        reactions: Reactions | None = None,
    ) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.poll_seconds = poll_seconds
        self.jobs = jobs if jobs is not None else default_jobs(settings, reactions)
        self._task: asyncio.Task[None] | None = None

    async def run_due(self, now: float | None = None) -> dict[str, int]:
        """One pass: every job whose interval has elapsed runs in its own transaction."""
        now = time.monotonic() if now is None else now
        done: dict[str, int] = {}
        for job in self.jobs:
            if job.last_run and now - job.last_run < job.every_seconds:
                continue
            try:
                if job.own_transactions:
                    done[job.name] = await job.run(self.sessions)
                else:
                    async with self.sessions() as session, session.begin():
                        done[job.name] = await job.run(session)
                job.last_run = now
            except Exception:  # one failing job must not stop the others; it is retried next pass
                logger.exception("worker job %s failed", job.name)
        return done

    async def run_forever(self) -> None:
        while True:
            await self.run_due()
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
