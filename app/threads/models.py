from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Thread(Base):
    """A conversation with a fixed audience. Who may read it follows from audience + buyer/seller."""

    __tablename__ = "threads"
    __table_args__ = (
        # One index per way an inbox is listed, each ending in the keyset order (last_message_at, id).
        Index("ix_threads_seller_activity", "seller_id", "last_message_at", "id"),
        Index("ix_threads_buyer_activity", "buyer_id", "last_message_at", "id"),
        Index("ix_threads_activity", "last_message_at", "id"),
        Index("ix_threads_order", "order_id"),
        Index("ix_threads_dispute", "dispute_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    audience: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"))
    buyer_id: Mapped[str | None] = mapped_column(String(128))
    seller_id: Mapped[str | None] = mapped_column(ForeignKey("sellers.id"))
    dispute_id: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Messages are numbered 1, 2, 3... per thread; unread counts are differences of these numbers.
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_author_party: Mapped[str | None] = mapped_column(String(16))


class Message(Base):
    """Immutable evidence: never edited, never deleted."""

    __tablename__ = "messages"
    __table_args__ = (Index("uq_messages_thread_seq", "thread_id", "seq", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"))
    seq: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[str] = mapped_column(String(128))
    author_role: Mapped[str] = mapped_column(String(16))
    author_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReadCursor(Base):
    """How far one participant has read a thread (the seq of the last message read)."""

    __tablename__ = "read_cursors"

    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"), primary_key=True)
    reader: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_read_seq: Mapped[int] = mapped_column(Integer, default=0)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    uploader: Mapped[str] = mapped_column(String(200), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageAttachment(Base):
    __tablename__ = "message_attachments"

    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    attachment_id: Mapped[str] = mapped_column(ForeignKey("attachments.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Macro(Base):
    """A canned answer. ``seller_id`` null: the operator's shared macros; otherwise one shop's."""

    __tablename__ = "macros"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str | None] = mapped_column(ForeignKey("sellers.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
