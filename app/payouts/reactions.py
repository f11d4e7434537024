"""What other domains do when money moves, handed to payouts as callbacks.

Payouts sits below disputes and beside threads, so it imports neither: app/main.py builds one
``Reactions`` (disputes' and threads' functions) and passes it to the refunds controller and to the
worker. Each callback runs inside the transaction that moved the money, so the reaction commits (or
rolls back) with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.payouts.models import PromoCode, Refund
from app.payouts.rules import Split

# Read under the order's lock (session, order_id): what other domains have committed on the order but
# not granted yet (the disputes' open offers and accepted resolutions). It counts against the per-order
# limits like a grant.
Committed = Callable[[AsyncSession, str], Awaitable[Split]]
# A refund reached ``succeeded`` or ``failed`` (session, refund, now): its dispute moves on.
RefundSettled = Callable[[AsyncSession, Refund, datetime], Awaitable[None]]
# A promo code was granted for a dispute (session, promo, dispute_id, order_id): its buyer is sent the code.
PromoIssued = Callable[[AsyncSession, PromoCode, str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reactions:
    committed: Committed | None = None
    refund_settled: RefundSettled | None = None
    promo_issued: PromoIssued | None = None
