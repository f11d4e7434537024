from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Refund(Base):
    """Compensation paid out of escrow. Written (with its ledger entries) before the provider is called;
    the worker then asks the provider with this row's id as the idempotency key."""

    __tablename__ = "refunds"
    __table_args__ = (
        Index("ix_refunds_order", "order_id", "created_at"),
        Index("ix_refunds_created", "created_at", "id"),
        # The KPI reports' population is the orders of a window: a refund carries its order's date and shop.
        Index("ix_refunds_order_created", "order_created_at"),
        Index("ix_refunds_seller_order_created", "seller_id", "order_created_at"),
        # The worker's question: which refunds are waiting for the provider, and due?
        Index(
            "ix_refunds_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    # Copied from the order when the refund is written (an order's shop and date never change), so the
    # reports count a window's refunds without joining its orders (app/reports/kpis.py).
    seller_id: Mapped[str] = mapped_column(String(64))
    order_created_at: Mapped[datetime]
    dispute_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # What caused it, unique: a dispute's resolution, or an API caller's idempotency key.
    # "api" + the caller (at most 205 characters) + an Idempotency-Key (at most 255), see app/keys.py.
    source_key: Mapped[str] = mapped_column(String(500), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    funded_by: Mapped[str] = mapped_column(String(16))
    bonus_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    seller_amount: Mapped[int] = mapped_column(BigInteger)
    operator_amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditNoteCounter(Base):
    """The last credit note number of a year. Incremented under its row lock in the issuing transaction,
    so numbers are gap-free: a rolled-back issue rolls its number back too."""

    __tablename__ = "credit_note_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


class CreditNote(Base):
    __tablename__ = "credit_notes"
    __table_args__ = (Index("ix_credit_notes_buyer", "buyer_id", "created_at"),)

    number: Mapped[str] = mapped_column(String(20), primary_key=True)  # CN-YYYY-NNNNNN
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"), unique=True)
    buyer_id: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)  # the compensation
    bonus_amount: Mapped[int] = mapped_column(BigInteger)  # the operator's bonus on top
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Wallet(Base):
    """A buyer's lock row: redemptions of its credit are serialized on it. The balance itself is never
    stored; it is the sum of the buyer's ``buyer_credit`` ledger entries."""

    __tablename__ = "wallets"

    buyer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditRedemption(Base):
    __tablename__ = "credit_redemptions"
    __table_args__ = (UniqueConstraint("buyer_id", "order_id", name="uq_credit_redemptions_buyer_order"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    buyer_id: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[str] = mapped_column(String(64))  # the order paid with it, at the marketplace's checkout
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromoCode(Base):
    __tablename__ = "promo_codes"
    __table_args__ = (Index("ix_promo_codes_buyer", "buyer_id"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"), unique=True)
    buyer_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)  # its value: compensation plus bonus
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime]
    redeemed_order_id: Mapped[str | None] = mapped_column(String(64))
    redeemed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderEventRecord(Base):
    """Provider webhook events received: each event id is applied once, however often it arrives, and
    what came of it is kept. A ``rejected`` event moved no money; finance reads why
    (``GET /v1/provider-events?status=rejected``) and settles it by hand with the provider."""

    __tablename__ = "provider_events"
    __table_args__ = (Index("ix_provider_events_status_received", "status", "received_at", "id"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # applied, ignored (nothing of ours), rejected (its content does not fit: no money moved);
    # "accepted" marks events received before outcomes were recorded.
    status: Mapped[str] = mapped_column(String(16), server_default=text("'accepted'"))
    reason: Mapped[str | None] = mapped_column(String(64))  # a stable code, for rejected events
    detail: Mapped[str | None] = mapped_column(String(500))
    # What the event said, as far as it could be read, and what it was matched to.
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    charge_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    order_id: Mapped[str | None] = mapped_column(String(64))
    refund_id: Mapped[str | None] = mapped_column(String(40))


class Payout(Base):
    """An order's escrow released to its shop: one per order. Written (with its ledger transaction)
    before the provider is called; the worker then transfers with a key derived from this row's id, so a
    crash, a retry or two workers never transfer twice. ``blocked`` while the shop has no connected
    account (nothing posted yet); ``failed`` when the provider finally refuses (the ledger is reversed)."""

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_seller", "seller_id", "created_at", "id"),
        Index("ix_payouts_created", "created_at", "id"),
        Index(
            "ix_payouts_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # po_...
    seller_id: Mapped[str] = mapped_column(ForeignKey("sellers.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # what is transferred
    currency: Mapped[str] = mapped_column(String(3))
    debt_netted: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))  # pending, paid, failed, blocked
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the escrow was released (the payout opened for transfer): later than ``created_at`` for a payout
    # that was blocked first. Stripe keeps idempotency keys 24 h from the first attempt, which follows it.
    released_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]


class TransferReversal(Base):
    """The seller part of a compensation granted after the order's payout, to take back from the shop's
    transfer: one per refund, written in the grant's transaction (the buyer's refund never waits for it).
    The worker reverses the transfer with a key derived from the refund; ``succeeded`` (the ``trr_`` id)
    or ``debt`` when the provider refuses (the shop's balance cannot cover it: netted from its next release)."""

    __tablename__ = "transfer_reversals"
    __table_args__ = (
        Index(
            "ix_transfer_reversals_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_transfer_reversals_payout", "payout_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # rev_...
    payout_id: Mapped[str] = mapped_column(ForeignKey("payouts.id"))
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, debt, canceled (the refund failed)
    provider_ref: Mapped[str | None] = mapped_column(String(255))  # trr_...
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
