from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class SellerAlert(Base):
    """One crossing of a threshold by a shop: raised (and announced) once, cleared when the figure is back
    under. At most one raised row per shop and metric (the partial unique index): a second worker racing
    on the same crossing inserts nothing and announces nothing."""

    __tablename__ = "seller_alerts"
    __table_args__ = (
        Index(
            "uq_seller_alerts_raised",
            "seller_id",
            "metric",
            unique=True,
            postgresql_where=text("cleared_at IS NULL"),
            sqlite_where=text("cleared_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
