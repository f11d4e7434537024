"""Payouts and seller balances over HTTP (thin: the rules are in payout_views.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.paging import Cursor, Limit
from app.payouts import payout_views
from app.payouts.schemas import PayoutRead, SellerBalanceRead
from app.permissions.guards import allow
from app.schemas import Page


class PayoutController(Controller):
    path = "/v1/payouts"
    tags = ["payouts"]

    @get("/", guards=[allow("payout", "read")], summary="Payouts the caller may see, newest first")
    async def list_payouts(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        cursor: Cursor = None,
        seller_id: Annotated[str | None, QueryParameter()] = None,
        order_id: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[Literal["pending", "paid", "failed", "blocked"] | None, QueryParameter()] = None,
    ) -> Page[PayoutRead]:
        return await payout_views.list_payouts(
            db_session,
            actor=request.user,
            seller_id=seller_id,
            order_id=order_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )

    @get("/{payout_id:str}", guards=[allow("payout", "read")], summary="One payout")
    async def get_payout(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], payout_id: FromPath[str]
    ) -> PayoutRead:
        return await payout_views.get_payout(db_session, actor=request.user, payout_id=payout_id)


class SellerBalanceController(Controller):
    path = "/v1/sellers/{seller_id:str}/balance"
    tags = ["payouts"]

    @get("/", guards=[allow("payout", "read")], summary="A shop's money per currency: held, frozen, paid out...")
    async def get_balance(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], seller_id: FromPath[str]
    ) -> SellerBalanceRead:
        return await payout_views.seller_balance(db_session, actor=request.user, seller_id=seller_id)
