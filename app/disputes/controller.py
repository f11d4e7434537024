from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.disputes import service
from app.disputes.schemas import ActionBody, AnyAction, CsatCreate, DisputeCreate, DisputeEventRead, DisputeRead
from app.disputes.workflow import Status
from app.idempotency import IdempotencyKey, idempotent
from app.paging import Cursor, Limit
from app.permissions.guards import allow
from app.schemas import Page, StrictBody, decode
from app.settings import Settings


class DisputeController(Controller):
    path = "/v1/disputes"
    tags = ["disputes"]
    guards = [allow("dispute", "read")]

    @post("/", guards=[allow("dispute", "open")], summary="Open a dispute about an order (its buyer)")
    async def open_dispute(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: StrictBody[DisputeCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DisputeRead]:
        async def call() -> tuple[int, DisputeRead]:
            body = decode(DisputeCreate, data)
            return 201, await service.open_dispute(db_session, actor=request.user, data=body, settings=settings)

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/", summary="The caller's visible disputes, newest first")
    async def list_disputes(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[Status | None, QueryParameter()] = None,
        seller_id: Annotated[str | None, QueryParameter()] = None,
        assignee_id: Annotated[str | None, QueryParameter()] = None,
        order_id: Annotated[str | None, QueryParameter()] = None,
    ) -> Page[DisputeRead]:
        return await service.list_disputes(
            db_session,
            actor=request.user,
            settings=settings,
            limit=limit,
            cursor=cursor,
            status=status.value if status else None,
            seller_id=seller_id,
            assignee_id=assignee_id,
            order_id=order_id,
        )

    @get("/{dispute_id:str}", summary="One dispute, with what the caller may do now")
    async def get_dispute(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        dispute_id: FromPath[str],
    ) -> DisputeRead:
        return await service.get_dispute(db_session, actor=request.user, dispute_id=dispute_id, settings=settings)

    @get("/{dispute_id:str}/events", summary="The audit timeline, oldest first")
    async def list_events(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        dispute_id: FromPath[str],
        limit: Limit = 200,
        cursor: Cursor = None,
    ) -> Page[DisputeEventRead]:
        return await service.list_events(
            db_session, actor=request.user, dispute_id=dispute_id, limit=limit, cursor=cursor
        )

    @post("/{dispute_id:str}/actions", status_code=200, summary="Take one action (tagged by its `action` field)")
    async def act(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        dispute_id: FromPath[str],
        data: StrictBody[AnyAction],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DisputeRead]:
        async def call() -> tuple[int, DisputeRead]:
            body: ActionBody = decode(AnyAction, data)  # type: ignore[arg-type]
            return 200, await service.act(
                db_session, actor=request.user, dispute_id=dispute_id, body=body, settings=settings
            )

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @post("/{dispute_id:str}/csat", summary="Rate how the dispute was handled (its buyer, once)")
    async def rate(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        dispute_id: FromPath[str],
        data: StrictBody[CsatCreate],
    ) -> Response[DisputeRead]:
        result = await service.rate(
            db_session, actor=request.user, dispute_id=dispute_id, data=decode(CsatCreate, data), settings=settings
        )
        return Response(result, status_code=201)


class QueueController(Controller):
    path = "/v1/queue"
    tags = ["disputes"]

    @get("/", guards=[allow("dispute_queue", "read")], summary="Escalated and in-review disputes, most urgent first")
    async def queue(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[Literal["escalated", "in_review"] | None, QueryParameter()] = None,
        assignee_id: Annotated[str | None, QueryParameter()] = None,
        priority: Annotated[Literal["critical", "standard"] | None, QueryParameter()] = None,
        seller_id: Annotated[str | None, QueryParameter()] = None,
    ) -> Page[DisputeRead]:
        return await service.list_queue(
            db_session,
            actor=request.user,
            settings=settings,
            limit=limit,
            cursor=cursor,
            status=status,
            assignee_id=assignee_id,
            priority=priority,
            seller_id=seller_id,
        )
