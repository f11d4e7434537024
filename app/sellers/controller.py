from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.idempotency import IdempotencyKey, idempotent
from app.permissions.guards import allow
from app.schemas import StrictBody, decode
from app.sellers import service
from app.sellers.schemas import SellerRead, SellerUpsert


class SellerController(Controller):
    path = "/v1/sellers"
    tags = ["sellers"]

    @put("/{seller_id:str}", guards=[allow("seller", "write")], summary="Create or update a shop")
    async def upsert_seller(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        seller_id: FromPath[str],
        data: StrictBody[SellerUpsert],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SellerRead]:
        async def call() -> tuple[int, SellerRead]:
            seller, created = await service.upsert_seller(
                db_session,
                actor=request.user,
                seller_id=seller_id,
                data=decode(SellerUpsert, data),
            )
            return (201 if created else 200), seller

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/{seller_id:str}", summary="A shop and its after-sales settings")
    async def get_seller(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], seller_id: FromPath[str]
    ) -> SellerRead:
        return await service.get_seller(db_session, actor=request.user, seller_id=seller_id)
