from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Seller(Base):
    """A third-party shop on the marketplace, with its after-sales settings."""

    __tablename__ = "sellers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    # How much the shop may refund per order on its own, without the operator (null: nothing).
    refund_budget_amount: Mapped[int | None] = mapped_column(BigInteger)
    refund_budget_currency: Mapped[str | None] = mapped_column(String(3))
    # When a return refund is paid: as soon as the buyer ships it, or once the seller receives it.
    refund_on: Mapped[str] = mapped_column(String(16), default="receipt")
    auto_accept_below_amount: Mapped[int | None] = mapped_column(BigInteger)
    auto_accept_below_currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
