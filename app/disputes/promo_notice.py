"""A promo code granted for a dispute is sent to its buyer (the payouts domain calls this back: see
``app.payouts.reactions.PromoIssued``, wired by app/main.py and by a dispute's own grant)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import SYSTEM_ACTOR
from app.payouts.models import PromoCode
from app.threads import service as threads
from app.threads.schemas import Audience


async def tell_buyer(session: AsyncSession, promo: PromoCode, dispute_id: str, order_id: str) -> None:
    """Post the code to the buyer where only the buyer and operator staff read: the dispute's
    ``operator_buyer`` thread (opened if needed), never the thread the shop shares. The code is a bearer
    secret. The author is the service itself (role ``system``), not a member of staff."""
    value = f"{promo.amount / 100:.2f} {promo.currency}"
    body = (
        f"Your promo code {promo.code} is worth {value} on your next order, "
        f"until {promo.expires_at:%Y-%m-%d}. It can be used once, by you only."
    )
    await threads.post_to_party(
        session,
        actor=SYSTEM_ACTOR,
        dispute_id=dispute_id,
        order_id=order_id,
        audience=Audience.OPERATOR_BUYER,
        buyer_id=promo.buyer_id,
        seller_id=None,
        subject=f"Your compensation for dispute {dispute_id}",
        body=body,
    )
