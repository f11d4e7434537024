from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.idempotency import IdempotencyKey, idempotent
from app.paging import Limit
from app.permissions.guards import allow
from app.schemas import Page, StrictBody, UploadBody, decode, upload_file
from app.threads import attachments, macros, messages, service
from app.threads.schemas import (
    AttachmentRead,
    Audience,
    MacroCreate,
    MacroRead,
    MessageCreate,
    MessageRead,
    ReadMark,
    ThreadCreate,
    ThreadCreated,
    ThreadRead,
)
from app.threads.storage import AttachmentStorage

MAX_UPLOAD_BODY = attachments.MAX_SIZE + 1024 * 1024  # the file plus multipart framing


class ThreadController(Controller):
    path = "/v1/threads"
    tags = ["threads"]
    guards = [allow("thread:*", "read")]

    @post("/", guards=[allow("thread:*", "open")], summary="Open a thread with its first message")
    async def open_thread(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        data: StrictBody[ThreadCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ThreadCreated]:
        async def call() -> tuple[int, ThreadCreated]:
            return 201, await service.open_thread(db_session, actor=request.user, data=decode(ThreadCreate, data))

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/", summary="The caller's visible threads, newest activity first")
    async def list_threads(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        audience: Annotated[Audience | None, QueryParameter()] = None,
        order_id: Annotated[str | None, QueryParameter()] = None,
        dispute_id: Annotated[str | None, QueryParameter()] = None,
        unread: Annotated[bool, QueryParameter()] = False,
    ) -> Page[ThreadRead]:
        return await service.list_threads(
            db_session,
            actor=request.user,
            limit=limit,
            cursor=cursor,
            audience=audience,
            order_id=order_id,
            dispute_id=dispute_id,
            unread=unread,
        )

    @get("/{thread_id:str}", summary="One thread")
    async def get_thread(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], thread_id: FromPath[str]
    ) -> ThreadRead:
        return await service.get_thread(db_session, actor=request.user, thread_id=thread_id)

    @get("/{thread_id:str}/messages", summary="Messages, oldest first")
    async def list_messages(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        thread_id: FromPath[str],
        after: Annotated[str | None, QueryParameter()] = None,
        limit: Limit = 50,
    ) -> Page[MessageRead]:
        return await messages.list_messages(
            db_session, actor=request.user, thread_id=thread_id, after=after, limit=limit
        )

    @post("/{thread_id:str}/messages", guards=[allow("thread:*", "write")], summary="Post a message")
    async def post_message(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        thread_id: FromPath[str],
        data: StrictBody[MessageCreate],
        thread_reactions: NamedDependency[messages.ThreadReactions],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MessageRead]:
        async def call() -> tuple[int, MessageRead]:
            message = await messages.post_message(
                db_session,
                actor=request.user,
                thread_id=thread_id,
                data=decode(MessageCreate, data),
                on_dispute_message=thread_reactions.dispute_message,
            )
            return 201, message

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @post("/{thread_id:str}/read", status_code=204, summary="Move the caller's read cursor forward")
    async def mark_read(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        thread_id: FromPath[str],
        data: StrictBody[ReadMark],
    ) -> None:
        mark = decode(ReadMark, data)
        await service.mark_read(db_session, actor=request.user, thread_id=thread_id, message_id=mark.message_id)


class AttachmentController(Controller):
    path = "/v1/attachments"
    tags = ["threads"]

    @post(
        "/",
        guards=[allow("attachment", "write")],
        request_max_body_size=MAX_UPLOAD_BODY,
        summary="Upload one file (images, PDF, plain text; at most 10 MiB)",
    )
    async def upload(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        attachment_storage: NamedDependency[AttachmentStorage],
        data: UploadBody,
    ) -> AttachmentRead:
        file = upload_file(data)
        return await attachments.upload(
            db_session, attachment_storage, actor=request.user, filename=file.filename, data=await file.read()
        )

    @get("/{attachment_id:str}", guards=[allow("thread:*", "read")], summary="Download a file")
    async def download(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        attachment_storage: NamedDependency[AttachmentStorage],
        attachment_id: FromPath[str],
    ) -> Stream:
        found = await attachments.downloadable(db_session, actor=request.user, attachment_id=attachment_id)
        return Stream(
            attachment_storage.stream(found.id),
            media_type=found.content_type,
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename)}",
                "Content-Length": str(found.size),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )


class MacroController(Controller):
    path = "/v1/macros"
    tags = ["threads"]

    @get("/", guards=[allow("macro", "read")], summary="Canned answers: the operator's, or the caller's shop's")
    async def list_macros(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[MacroRead]:
        return await macros.list_macros(db_session, actor=request.user)

    @post("/", guards=[allow("macro", "write")], summary="Create a canned answer")
    async def create_macro(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        data: StrictBody[MacroCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MacroRead]:
        async def call() -> tuple[int, MacroRead]:
            return 201, await macros.create_macro(db_session, actor=request.user, data=decode(MacroCreate, data))

        return await idempotent(db_session, request, key=idempotency_key, call=call)
