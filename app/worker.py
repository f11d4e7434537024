"""The background worker: what runs without anyone asking.

Dispute timers, outbound webhook deliveries, refunds and escrow releases paid through the gateway,
reconciliations, and housekeeping (old events, stale idempotency keys).
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
from app.disputes.timers import fire_due_timers
from app.events import service as events
from app.payouts import release, reversals, settlement
from app.payouts.gateway import PaymentGateway
from app.payouts.reactions import RefundSettled
from app.reconciliation import job as reconciliation
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


def housekeeping_jobs() -> list[Job]:
    return [
        Job("prune-events", 3600, events.prune),
        Job("prune-idempotency-keys", 3600, idempotency.prune_expired),
    ]


def all_jobs(settings: Settings, *, gateway: PaymentGateway | None, on_refund_settled: RefundSettled) -> list[Job]:
    """Every job of a worker. The payment gateway and the reactions come from the wiring
    (``app.main.build_worker``); without a gateway refunds are granted and stay pending until a worker
    with one runs."""
    jobs = housekeeping_jobs()

    async def dispute_timers(session: AsyncSession) -> int:
        return await fire_due_timers(session, settings=settings)

    jobs.append(Job("dispute-timers", settings.worker_poll_seconds, dispute_timers))
    policy = webhooks.Policy.from_settings(settings)

    async def deliver_webhooks(sessions: async_sessionmaker[AsyncSession]) -> int:
        return await webhooks.deliver_due(sessions, policy=policy)

    jobs.append(Job("deliver-webhooks", settings.worker_poll_seconds, deliver_webhooks, own_transactions=True))

    async def reconcile(sessions: async_sessionmaker[AsyncSession]) -> int:
        # Files need no gateway; a provider period without one fails with an error saying so.
        return await reconciliation.reconcile_due(
            sessions, gateway=gateway, edge_seconds=settings.reconciliation_edge_seconds
        )

    jobs.append(Job("reconcile", settings.worker_poll_seconds, reconcile, own_transactions=True))
    if gateway is not None:

        async def pay_refunds(sessions: async_sessionmaker[AsyncSession]) -> int:
            # A full batch means more are due: keep going (bounded, so other jobs get their turn)
            # instead of waiting a poll interval between batches.
            paid = 0
            for _ in range(REFUND_BATCHES_PER_PASS):
                done = await settlement.pay_due(
                    sessions,
                    gateway=gateway,
                    on_settled=on_refund_settled,
                    lease=timedelta(seconds=settings.refund_lease_seconds),
                )
                paid += done
                if done < settlement.BATCH:
                    break
            return paid

        jobs.append(Job("pay-refunds", settings.worker_poll_seconds, pay_refunds, own_transactions=True))

        async def release_escrow(sessions: async_sessionmaker[AsyncSession]) -> int:
            # As for refunds: a full batch (opened or transferred) means more are due, keep going (bounded).
            done = 0
            for _ in range(REFUND_BATCHES_PER_PASS):
                step = await release.release_due(
                    sessions,
                    gateway=gateway,
                    hold_seconds=settings.escrow_hold_seconds,
                    lease=timedelta(seconds=settings.payout_lease_seconds),
                )
                done += step
                if step < release.BATCH:
                    break
            return done

        jobs.append(Job("release-escrow", settings.worker_poll_seconds, release_escrow, own_transactions=True))

        async def reverse_transfers(sessions: async_sessionmaker[AsyncSession]) -> int:
            # The seller part of compensation granted after payout, taken back from the shop's transfer.
            return await reversals.reverse_due(
                sessions, gateway=gateway, lease=timedelta(seconds=settings.payout_lease_seconds)
            )

        jobs.append(Job("reverse-transfers", settings.worker_poll_seconds, reverse_transfers, own_transactions=True))
    return jobs


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        poll_seconds: float,
        jobs: list[Job] | None = None,
    ) -> None:
        """``jobs``: housekeeping only by default; the service's worker is built by ``app.main.build_worker``."""
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.poll_seconds = poll_seconds
        self.jobs = jobs if jobs is not None else housekeeping_jobs()
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
