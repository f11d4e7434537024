"""Store credit (credit notes, a buyer's wallet) and promo codes: compensation kept in our own ledger.

Stripe's customer balance only applies to invoices and its coupons not to one-off payments, so the
marketplace's checkout spends these through our API. Issuing happens inside ``grant_refund`` (same
transaction as the refund row); spending is serialized per buyer (wallet row lock) or per code (its row
lock) and idempotent per paying order.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import dialect_insert, utcnow
from app.errors import BusinessRuleViolation, Conflict, Forbidden, NotFound
from app.ledger import posting, postings
from app.ledger.posting import Account, TransactionKind
from app.ledger.views import party_balances
from app.money import Money
from app.payouts.models import CreditNote, CreditNoteCounter, CreditRedemption, PromoCode, Refund, Wallet
from app.payouts.schemas import (
    CreditNoteRead,
    CreditRead,
    CreditRedemptionCreate,
    CreditRedemptionRead,
    PromoRedemptionCreate,
    PromoRedemptionRead,
)
from app.permissions.enforcer import Resource, is_allowed

# No 0/O, 1/I/L: codes are read aloud and typed by hand.
PROMO_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
PROMO_LENGTH = 12  # 31^12 ≈ 7.9e17: not guessable


async def next_credit_note_number(session: AsyncSession, now: datetime) -> str:
    """CN-YYYY-NNNNNN, gap-free per year: the counter row is locked and bumped in this transaction."""
    year = now.year
    await session.execute(
        dialect_insert(session.get_bind().dialect.name, CreditNoteCounter)
        .values(year=year, last=0)
        .on_conflict_do_nothing()
    )
    counter = await session.get(CreditNoteCounter, year, with_for_update=True, populate_existing=True)
    if counter is None:  # inserted just above (or by a concurrent transaction): never missing
        raise RuntimeError(f"credit note counter for {year} is missing")
    counter.last += 1
    return f"CN-{year}-{counter.last:06d}"


async def issue_credit_note(session: AsyncSession, refund: Refund, *, buyer_id: str, seller_id: str) -> str:
    number = await next_credit_note_number(session, refund.created_at)
    session.add(
        CreditNote(
            number=number,
            refund_id=refund.id,
            buyer_id=buyer_id,
            order_id=refund.order_id,
            amount=refund.amount,
            bonus_amount=refund.bonus_amount,
            currency=refund.currency,
            created_at=refund.created_at,
        )
    )
    await posting.post(
        session,
        kind=TransactionKind.CREDIT_ISSUED,
        reference=f"refund:{refund.id}:credit",
        entries=postings.credit_issue_entries(
            seller_part=refund.seller_amount,
            operator_part=refund.operator_amount,
            bonus=refund.bonus_amount,
            currency=refund.currency,
            buyer_id=buyer_id,
            seller_id=seller_id,
        ),
        order_id=refund.order_id,
        provider_id=None,  # lives in our ledger only
    )
    return number


async def issue_promo_code(
    session: AsyncSession, refund: Refund, *, buyer_id: str, seller_id: str, valid_for: timedelta
) -> PromoCode:
    promo = PromoCode(
        code="".join(secrets.choice(PROMO_ALPHABET) for _ in range(PROMO_LENGTH)),
        refund_id=refund.id,
        buyer_id=buyer_id,
        amount=refund.amount + refund.bonus_amount,
        currency=refund.currency,
        expires_at=refund.created_at + valid_for,
        created_at=refund.created_at,
    )
    session.add(promo)
    await posting.post(
        session,
        kind=TransactionKind.PROMO_ISSUED,
        reference=f"refund:{refund.id}:promo",
        entries=postings.promo_issue_entries(
            seller_part=refund.seller_amount,
            operator_part=refund.operator_amount,
            bonus=refund.bonus_amount,
            currency=refund.currency,
            buyer_id=buyer_id,
            seller_id=seller_id,
        ),
        order_id=refund.order_id,
        provider_id=None,  # lives in our ledger only
    )
    return promo


# --- the wallet -----------------------------------------------------------------------------------------


def may_see_wallet(actor: Actor, buyer_id: str) -> bool:
    """The policy's ``wallet`` lines: the buyer, operator staff, finance and the marketplace."""
    return is_allowed(actor, Resource(kind="wallet", buyer_id=buyer_id), "read")


def may_redeem(actor: Actor, kind: str, buyer_id: str) -> bool:
    """Whether the caller may spend a buyer's ``wallet`` credit or redeem a ``promo_code``: the policy says
    the marketplace's checkout only."""
    return is_allowed(actor, Resource(kind=kind, buyer_id=buyer_id), "redeem")


async def _balances(session: AsyncSession, buyer_id: str) -> dict[str, int]:
    return await party_balances(session, account=Account.BUYER_CREDIT, party_id=buyer_id)


async def get_credit(session: AsyncSession, *, actor: Actor, buyer_id: str) -> CreditRead:
    if not may_see_wallet(actor, buyer_id):
        raise NotFound(f"buyer {buyer_id!r} has no wallet you may see")
    balances = await _balances(session, buyer_id)
    notes = (
        await session.scalars(
            select(CreditNote).where(CreditNote.buyer_id == buyer_id).order_by(CreditNote.created_at.desc())
        )
    ).all()
    currency = next(iter(balances), notes[0].currency if notes else "EUR")
    return CreditRead(
        buyer_id=buyer_id,
        balance=Money(balances.get(currency, 0), currency),
        credit_notes=[
            CreditNoteRead(
                number=n.number,
                order_id=n.order_id,
                refund_id=n.refund_id,
                amount=Money(n.amount, n.currency),
                bonus=Money(n.bonus_amount, n.currency),
                created_at=n.created_at,
            )
            for n in notes
        ],
    )


async def redeem_credit(
    session: AsyncSession, *, actor: Actor, buyer_id: str, data: CreditRedemptionCreate
) -> tuple[CreditRedemptionRead, bool]:
    """Spend store credit on an order at checkout. Idempotent per (buyer, order): the same order again
    returns the first redemption. Returns (redemption, created)."""
    if not may_redeem(actor, "wallet", buyer_id):
        raise Forbidden("credit is spent by the marketplace's checkout")
    currency = data.amount.currency
    await session.execute(
        dialect_insert(session.get_bind().dialect.name, Wallet)
        .values(buyer_id=buyer_id, created_at=utcnow())
        .on_conflict_do_nothing()
    )
    await session.get(Wallet, buyer_id, with_for_update=True)  # one redemption at a time per buyer
    existing = await session.scalar(
        select(CreditRedemption).where(
            CreditRedemption.buyer_id == buyer_id, CreditRedemption.order_id == data.order_id
        )
    )
    balance = (await _balances(session, buyer_id)).get(currency, 0)
    if existing is not None:
        if (existing.amount, existing.currency) != (data.amount.amount, currency):
            raise Conflict(
                f"order {data.order_id!r} already spent {existing.amount} {existing.currency} of credit",
                code="credit.already_redeemed",
            )
        return _redemption(existing, balance), False
    if data.amount.amount == 0:
        raise BusinessRuleViolation("a redemption spends a positive amount", code="credit.invalid_amount")
    if data.amount.amount > balance:
        raise BusinessRuleViolation(
            f"the buyer has {balance} {currency} of credit, not {data.amount.amount}",
            code="credit.insufficient",
            balance=balance,
        )
    now = utcnow()
    redemption = CreditRedemption(
        id=f"crd_{uuid.uuid4().hex}",
        buyer_id=buyer_id,
        order_id=data.order_id,
        amount=data.amount.amount,
        currency=currency,
        created_at=now,
    )
    session.add(redemption)
    await posting.post(
        session,
        kind=TransactionKind.CREDIT_REDEEMED,
        reference=f"credit:{redemption.id}",
        entries=postings.credit_redemption_entries(data.amount.amount, currency, buyer_id),
        order_id=None,
        provider_id=None,
    )
    return _redemption(redemption, balance - data.amount.amount), True


def _redemption(r: CreditRedemption, balance: int) -> CreditRedemptionRead:
    return CreditRedemptionRead(
        redemption_id=r.id,
        buyer_id=r.buyer_id,
        order_id=r.order_id,
        amount=Money(r.amount, r.currency),
        balance=Money(balance, r.currency),
        created_at=r.created_at,
    )


# --- promo codes ----------------------------------------------------------------------------------------


async def redeem_promo(
    session: AsyncSession, *, actor: Actor, code: str, data: PromoRedemptionCreate
) -> tuple[PromoRedemptionRead, bool]:
    if not may_redeem(actor, "promo_code", data.buyer_id):
        raise Forbidden("promo codes are redeemed by the marketplace's checkout")
    promo = await session.get(PromoCode, code.strip().upper(), with_for_update=True, populate_existing=True)
    if promo is None:
        raise NotFound("unknown promo code")
    if promo.redeemed_order_id is not None:
        if promo.redeemed_order_id == data.order_id and promo.buyer_id == data.buyer_id:
            return _promo(promo), False  # the checkout retried: same answer
        raise Conflict("this promo code has already been used", code="promo.already_redeemed")
    if promo.buyer_id != data.buyer_id:
        raise BusinessRuleViolation("this promo code belongs to another buyer", code="promo.wrong_buyer")
    now = utcnow()
    if now >= promo.expires_at:
        raise BusinessRuleViolation(f"this promo code expired on {promo.expires_at:%Y-%m-%d}", code="promo.expired")
    promo.redeemed_order_id = data.order_id
    promo.redeemed_at = now
    await posting.post(
        session,
        kind=TransactionKind.PROMO_REDEEMED,
        reference=f"promo:{promo.code}:redeemed",
        entries=postings.promo_redemption_entries(promo.amount, promo.currency, promo.buyer_id),
        order_id=None,
        provider_id=None,
    )
    return _promo(promo), True


def _promo(promo: PromoCode) -> PromoRedemptionRead:
    if promo.redeemed_order_id is None or promo.redeemed_at is None:
        raise RuntimeError(f"promo code {promo.refund_id} is read as redeemed but is not")
    return PromoRedemptionRead(
        code=promo.code,
        buyer_id=promo.buyer_id,
        order_id=promo.redeemed_order_id,
        value=Money(promo.amount, promo.currency),
        redeemed_at=promo.redeemed_at,
    )
