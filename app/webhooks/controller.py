from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.idempotency import IdempotencyKey, idempotent
from app.paging import Cursor, Limit
from app.permissions.guards import allow
from app.schemas import Page, StrictBody, decode
from app.settings import Settings
from app.webhooks import service
from app.webhooks.schemas import DeliveryRead, EndpointCreate, EndpointCreated, EndpointRead


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]
    guards = [allow("webhook_endpoint", "read")]

    @post("/", guards=[allow("webhook_endpoint", "write")], summary="Subscribe a URL to events (admin)")
    async def create(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: StrictBody[EndpointCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[EndpointCreated]:
        async def call() -> tuple[int, EndpointCreated]:
            body = decode(EndpointCreate, data)
            return 201, await service.create_endpoint(db_session, actor=request.user, data=body, settings=settings)

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/", summary="Webhook endpoints, newest first")
    async def list_endpoints(
        self, db_session: NamedDependency[AsyncSession], limit: Limit = 50, cursor: Cursor = None
    ) -> Page[EndpointRead]:
        return await service.list_endpoints(db_session, limit=limit, cursor=cursor)

    @get("/{endpoint_id:str}", summary="One webhook endpoint (its secret is only shown at creation)")
    async def get_endpoint(self, db_session: NamedDependency[AsyncSession], endpoint_id: FromPath[str]) -> EndpointRead:
        return await service.get_endpoint(db_session, endpoint_id=endpoint_id)

    @delete("/{endpoint_id:str}", guards=[allow("webhook_endpoint", "write")], summary="Stop sending to it")
    async def deactivate(self, db_session: NamedDependency[AsyncSession], endpoint_id: FromPath[str]) -> None:
        await service.deactivate(db_session, endpoint_id=endpoint_id)

    @get("/{endpoint_id:str}/deliveries", summary="The delivery log, newest first, with every attempt")
    async def deliveries(
        self,
        db_session: NamedDependency[AsyncSession],
        endpoint_id: FromPath[str],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[DeliveryRead]:
        return await service.list_deliveries(db_session, endpoint_id=endpoint_id, limit=limit, cursor=cursor)
