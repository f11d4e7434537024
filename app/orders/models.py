from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class Order(Base):
    """An order pushed by the marketplace. Paid to the marketplace, held in escrow for the seller."""

    __tablename__ = "orders"
    __table_args__ = (
        # The release job's scan: only orders still held and delivered, so its cost does not grow with
        # the orders already released (nor with those never delivered); in the scan's own order
        # (``ORDER BY delivered_at, id LIMIT``), so it stops after a batch instead of sorting every due order.
        Index(
            "ix_orders_release_due",
            "delivered_at",
            "id",
            postgresql_where=text("escrow_status = 'held' AND delivered_at IS NOT NULL"),
            sqlite_where=text("escrow_status = 'held' AND delivered_at IS NOT NULL"),
        ),
        # The reports' windows (app/reports/kpis.py): orders created in [from, to), of all shops or one.
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_seller_created", "seller_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    buyer_id: Mapped[str] = mapped_column(String(128), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("sellers.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    commission_amount: Mapped[int] = mapped_column(BigInteger)
    payment_provider: Mapped[str] = mapped_column(String(16))
    # A charge belongs to one order: provider webhooks find the order by it (unique, see upsert_order).
    charge_id: Mapped[str] = mapped_column(String(255), index=True, unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    customer_id: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime | None]
    # held -> frozen while a dispute is open -> released to the seller (payouts).
    escrow_status: Mapped[str] = mapped_column(String(16), default="held")
    # Bumped on every change pushed by the marketplace; names ledger adjustments uniquely.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.position", lazy="selectin"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="lines")
