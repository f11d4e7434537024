from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.idempotency import IdempotencyKey, idempotent
from app.orders import service
from app.orders.schemas import OrderRead, OrderUpsert
from app.permissions.guards import allow
from app.schemas import StrictBody, decode
from app.settings import Settings


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @put("/{order_id:str}", guards=[allow("order", "write")], summary="Create or update an order (marketplace)")
    async def upsert_order(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        order_id: FromPath[str],
        data: StrictBody[OrderUpsert],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OrderRead]:
        async def call() -> tuple[int, OrderRead]:
            order, created = await service.upsert_order(
                db_session,
                actor=request.user,
                order_id=order_id,
                data=decode(OrderUpsert, data),
                escrow_hold_seconds=settings.escrow_hold_seconds,
            )
            return (201 if created else 200), order

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/{order_id:str}", summary="An order with its refund and escrow state")
    async def get_order(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        order_id: FromPath[str],
    ) -> OrderRead:
        return await service.get_order(
            db_session, actor=request.user, order_id=order_id, escrow_hold_seconds=settings.escrow_hold_seconds
        )
