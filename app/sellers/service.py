"""Shops: pushed by the marketplace, read by themselves and the operator."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import utcnow
from app.money import Money
from app.permissions.enforcer import Resource
from app.permissions.service import authorize
from app.sellers.models import Seller
from app.sellers.schemas import RefundOn, SellerRead, SellerSettings, SellerUpsert


def _resource(seller_id: str) -> Resource:
    return Resource(kind="seller", seller_id=seller_id)


def to_read(seller: Seller) -> SellerRead:
    budget = (
        Money(seller.refund_budget_amount, seller.refund_budget_currency)
        if seller.refund_budget_amount is not None and seller.refund_budget_currency
        else None
    )
    auto = (
        Money(seller.auto_accept_below_amount, seller.auto_accept_below_currency)
        if seller.auto_accept_below_amount is not None and seller.auto_accept_below_currency
        else None
    )
    return SellerRead(
        seller_id=seller.id,
        name=seller.name,
        stripe_account_id=seller.stripe_account_id,
        settings=SellerSettings(refund_budget=budget, refund_on=RefundOn(seller.refund_on), auto_accept_below=auto),
        created_at=seller.created_at,
        updated_at=seller.updated_at,
    )


async def upsert_seller(
    session: AsyncSession, *, actor: Actor, seller_id: str, data: SellerUpsert
) -> tuple[SellerRead, bool]:
    """Create or replace a shop. Returns the shop and whether it was created."""
    authorize(actor, _resource(seller_id), "write", label="seller", resource_id=seller_id)
    seller = await session.get(Seller, seller_id, with_for_update=True)
    created = seller is None
    if seller is None:
        seller = Seller(id=seller_id, created_at=utcnow())
        session.add(seller)
    settings = data.settings or SellerSettings()
    seller.name = data.name
    seller.stripe_account_id = data.stripe_account_id
    seller.refund_on = settings.refund_on.value
    seller.refund_budget_amount = settings.refund_budget.amount if settings.refund_budget else None
    seller.refund_budget_currency = settings.refund_budget.currency if settings.refund_budget else None
    seller.auto_accept_below_amount = settings.auto_accept_below.amount if settings.auto_accept_below else None
    seller.auto_accept_below_currency = settings.auto_accept_below.currency if settings.auto_accept_below else None
    seller.updated_at = utcnow()
    await session.flush()
    return to_read(seller), created


async def get_seller(session: AsyncSession, *, actor: Actor, seller_id: str) -> SellerRead:
    authorize(actor, _resource(seller_id), "read", label="seller", resource_id=seller_id)
    seller = await session.get(Seller, seller_id)
    if seller is None:
        from app.errors import NotFound

        raise NotFound(f"seller {seller_id!r} does not exist")
    return to_read(seller)
