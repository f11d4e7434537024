"""Reconciliations over HTTP (thin: the rules are in service.py, the work in job.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from app.idempotency import IdempotencyKey, idempotent
from app.paging import Cursor, Limit
from app.permissions.guards import allow
from app.reconciliation import service
from app.reconciliation.schemas import ExplanationCreate, ItemRead, ItemStatus, PeriodCreate, ReconciliationRead
from app.schemas import Page, StrictBody, decode
from app.settings import Settings

MAX_UPLOAD_BODY = 4 * 1024**3  # an export of millions of rows; streamed to disk, never held in memory
# The route's limit is the upload's; a JSON period is read into memory, so it gets its own small one.
MAX_JSON_BODY = 64 * 1024
FORM_FIELDS = ("file", "from", "to")


def _form_time(form: Any, name: str) -> datetime | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValidationFailed(f"{name}: must be a text field (RFC 3339 time)", field=name)
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{name}: not an RFC 3339 time: {raw[:40]!r}", field=name) from None
    if value.tzinfo is None:
        raise ValidationFailed(f"{name}: give a time zone (2026-11-01T00:00:00Z)", field=name)
    return value


class ReconciliationController(Controller):
    path = "/v1/reconciliations"
    tags = ["reconciliation"]

    @post(
        "/",
        guards=[allow("reconciliation", "write")],
        request_max_body_size=MAX_UPLOAD_BODY,
        status_code=202,
        summary="Reconcile a period pulled from the provider (JSON) or an uploaded Stripe export (multipart)",
    )
    async def start(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ReconciliationRead]:
        content_type, _ = request.content_type
        if content_type == "multipart/form-data":
            form = await request.form()
            if other := [name for name in form if name not in FORM_FIELDS]:
                raise ValidationFailed(f"{other[0]}: unknown form field (file, from, to)", field=str(other[0]))
            files = form.getall("file") if "file" in form else []
            if len(files) != 1 or not isinstance(files[0], UploadFile):
                raise ValidationFailed("file: send exactly one file part named `file`", field="file")
            upload: UploadFile = files[0]
            created = await service.accept_upload(
                db_session,
                actor=request.user,
                read_chunk=upload.read,
                directory=settings.reconciliation_files,
                period_from=_form_time(form, "from"),
                period_to=_form_time(form, "to"),
            )
            return Response(created, status_code=202)
        if content_type != "application/json":
            raise UnsupportedMediaType("send application/json {from, to} or multipart/form-data with a file")
        if request.content_length is None or request.content_length > MAX_JSON_BODY:
            raise PayloadTooLarge(f"a JSON period is at most {MAX_JSON_BODY} bytes, with a Content-Length")
        try:
            raw = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            raise ValidationFailed("body: not JSON", field="body") from None
        period = decode(PeriodCreate, raw)

        async def call() -> tuple[int, ReconciliationRead]:
            found = await service.start_reconciliation(
                db_session, actor=request.user, period_from=period.from_, period_to=period.to
            )
            return 202, found

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/", guards=[allow("reconciliation", "read")], summary="Reconciliations, newest first")
    async def list_reconciliations(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[ReconciliationRead]:
        return await service.list_reconciliations(db_session, actor=request.user, limit=limit, cursor=cursor)

    @get("/{reconciliation_id:str}", guards=[allow("reconciliation", "read")], summary="One reconciliation")
    async def get_reconciliation(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        reconciliation_id: FromPath[str],
    ) -> ReconciliationRead:
        return await service.get_reconciliation(db_session, actor=request.user, rec_id=reconciliation_id)

    @get(
        "/{reconciliation_id:str}/items",
        guards=[allow("reconciliation", "read")],
        summary="A reconciliation's items by status (format=csv: every item of the filter, streamed)",
    )
    async def list_items(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        reconciliation_id: FromPath[str],
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[ItemStatus | None, QueryParameter()] = None,
        format: Annotated[Literal["json", "csv"], QueryParameter()] = "json",
    ) -> Response[Any]:
        if format == "csv":
            rows = await service.items_csv(
                db_session, request.app.state.engine, actor=request.user, rec_id=reconciliation_id, status=status
            )
            name = f"{reconciliation_id}-{status or 'all'}.csv"
            return Stream(
                rows,
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        page = await service.list_items(
            db_session, actor=request.user, rec_id=reconciliation_id, status=status, limit=limit, cursor=cursor
        )
        return Response(page)

    @post(
        "/{reconciliation_id:str}/items/{item_id:str}/explanation",
        guards=[allow("reconciliation", "explain")],
        status_code=200,
        summary="Mark a break explained (finance); who and when are kept",
    )
    async def explain(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        reconciliation_id: FromPath[str],
        item_id: FromPath[str],
        data: StrictBody[ExplanationCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ItemRead]:
        body = decode(ExplanationCreate, data)

        async def call() -> tuple[int, ItemRead]:
            found = await service.explain_item(
                db_session, actor=request.user, rec_id=reconciliation_id, item_id=item_id, note=body.note
            )
            return 200, found

        return await idempotent(db_session, request, key=idempotency_key, call=call)
