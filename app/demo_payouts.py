"""The demo's money leaving escrow, told through the worker's own jobs and the payment provider's adapter.

``make demo`` (devtools/demo.py) calls :func:`tell` after seeding, against the local Stripe-compatible
server; nothing here writes a payout, a reversal or a ledger entry by hand:

1. a release pass as it ran 15 days ago pays ``ord-3001`` (Bouilloires & Co) and ``ord-3002`` (Vélos du
   Coin): their hold had passed then; the orders delivered later were not due yet;
2. each shop then grants a refund it funds itself on that order, after its payout (``pay-refunds`` pays
   them through the provider);
3. Vélos du Coin's connected account is emptied (``drain``: the shop took its balance to its bank), so
   ``reverse-transfers`` reverses Bouilloires & Co's transfer (a ``trr_``) but is refused
   ``balance_insufficient`` for Vélos du Coin: the part becomes the shop's debt;
4. today's ``release-escrow`` pass releases the orders due now; the shop's first, ``ord-3003``, nets the
   debt (``debt_netted``).

Told once: a database that already has the story's payouts is left as it is (seeding stays re-runnable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.auth import Actor, Role
from app.db import utcnow
from app.main import build_worker, payment_gateway
from app.money import Money
from app.payouts import refunds, release, reversals
from app.payouts.models import Payout, TransferReversal
from app.payouts.schemas import PayoutStatus, RefundCreate, RefundKind
from app.settings import Settings

# The shop that empties its connected account before its refund is recovered (so the reversal is refused).
DRAINED_ACCOUNT = "acct_demo_bikes"  # Vélos du Coin's
FIRST_RELEASED = ("ord-3001", "ord-3002")
RELEASED_AGO = timedelta(days=15)
# (source key, order, the shop member granting it, amount, reason): seller-funded, granted after payout.
REFUNDS_AFTER_RELEASE = [
    (
        "demo:refund-after-release-kettles",
        "ord-3001",
        Actor(id="seller-ines", role=Role.SELLER, seller_id="shop-kettles", name="Inès (Bouilloires & Co)"),
        1_500,
        "Rayure sur la carafe, constatée après paiement",
    ),
    (
        "demo:refund-after-release-bikes",
        "ord-3002",
        Actor(id="seller-yanis", role=Role.SELLER, seller_id="shop-bikes", name="Yanis (Vélos du Coin)"),
        2_000,
        "Rayon voilé, constaté après paiement",
    ),
]

Drain = Callable[[str], Awaitable[None]]


async def tell(engine: AsyncEngine, *, settings: Settings, drain: Drain) -> bool:
    """Run the story (see the module's docstring). ``drain(account_id)`` empties a connected account's
    balance at the provider. Returns False when the database had the story already."""
    gateway = payment_gateway(settings)
    if gateway is None:
        raise ValueError("the payout story needs a payment provider (SAV_STRIPE_API_KEY)")
    worker = build_worker(settings, engine)
    jobs = {job.name: job for job in worker.jobs}
    sessions = worker.sessions
    async with sessions() as session:
        if await session.scalar(select(Payout.id).where(Payout.order_id.in_(FIRST_RELEASED)).limit(1)):
            return False
    # The card refunds seeded before (some block their order's release until paid).
    await jobs["pay-refunds"].run(sessions)
    now = utcnow()
    # The release job's own pass, at the time it ran: what was due then, not what is due today.
    await release.release_due(
        sessions, gateway=gateway, hold_seconds=settings.escrow_hold_seconds, now=now - RELEASED_AGO
    )
    async with sessions() as session, session.begin():
        for source_key, order_id, shop_member, amount, reason in REFUNDS_AFTER_RELEASE:
            await refunds.grant_refund(
                session,
                actor=shop_member,
                data=RefundCreate(
                    order_id=order_id,
                    kind=RefundKind.PARTIAL,
                    amount=Money(amount, "EUR"),
                    funded_by="seller",
                    reason=reason,
                ),
                source_key=source_key,
                settings=settings,
            )
    await jobs["pay-refunds"].run(sessions)  # the buyer first ...
    await drain(DRAINED_ACCOUNT)
    await jobs["reverse-transfers"].run(sessions)  # ... then the shop: one reversal made, one refused
    await jobs["release-escrow"].run(sessions)
    return True


async def summary(engine: AsyncEngine) -> str:
    """One line on the payouts in the database (empty when there are none)."""
    maker = async_sessionmaker(engine)
    async with maker() as session:
        paid = await session.scalar(select(func.count(Payout.id)).where(Payout.status == PayoutStatus.PAID.value))
        reversed_ = await session.scalar(
            select(func.count(TransferReversal.id)).where(TransferReversal.status == reversals.SUCCEEDED)
        )
        netted = await session.scalar(select(func.count(Payout.id)).where(Payout.debt_netted > 0))
    if not paid:
        return ""
    reversed_ = reversed_ or 0
    return (
        f"payouts: {paid} paid, {reversed_} reversal{'s' if reversed_ != 1 else ''}, {netted} debt netted"
        " — try GET /v1/payouts with the finance token"
    )
