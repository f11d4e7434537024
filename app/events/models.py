from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Event(Base):
    """The event log behind real-time delivery and resume. Appended in the same transaction as the
    change it describes; numbered once after commit, then never updated; pruned after the retention period.

    ``resource_kind``/``buyer_id``/``seller_id`` are the policy attributes of what the event is about
    (``thread:<audience>`` for thread events), so who may see an event is decided by the same Casbin
    policy as the resource itself. ``recipient`` restricts an event to one person (a read cursor moving).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_created_at", "created_at"),
        Index("uq_events_seq", "seq", unique=True),
        # The sequencer's work list: committed rows that have no public number yet.
        Index("ix_events_unsequenced", "id", postgresql_where=text("seq IS NULL"), sqlite_where=text("seq IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    # The public event_id, given after commit by the sequencer (see app/events/service.py).
    seq: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(40))
    resource_kind: Mapped[str] = mapped_column(String(40))
    buyer_id: Mapped[str | None] = mapped_column(String(128))
    seller_id: Mapped[str | None] = mapped_column(String(64))
    thread_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
