"""``Idempotency-Key`` for mutating endpoints: the first response is stored per (caller, key) in the same
transaction as the change, and a repeat with the same body replays it.

Concurrency: the key row is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` before the change runs. A
second request with the same key waits on PostgreSQL for the first transaction (and on SQLite never runs
at the same time, writes being serialized), then finds its committed response and replays it. If the first
request failed, nothing was committed, not even the key, so a retry runs for real.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter
from sqlalchemy import LargeBinary, SmallInteger, String, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.auth import Actor
from app.db import Base, dialect_insert, utcnow
from app.errors import BusinessRuleViolation, ValidationFailed

KEY_TTL = timedelta(hours=24)

MAX_KEY_LENGTH = 255
IdempotencyKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", required=False, min_length=1, max_length=MAX_KEY_LENGTH)
]
# POST /v1/refunds: money moves, so a retry must be recognisable; a request without a key is a 400.
RequiredIdempotencyKey = Annotated[
    str, HeaderParameter(name="Idempotency-Key", required=True, min_length=1, max_length=MAX_KEY_LENGTH)
]
# Printable ASCII: a key is stored and compared, and NUL or other control bytes cannot be stored.
_KEY = re.compile(r"^[\x20-\x7e]+$")


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    # role + shop id (64) + user id (128) with separators: at most 205 characters.
    actor_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Hash of the request; JSON bodies are canonicalized so key order and spacing do not matter."""
    canonical = body
    if body:
        try:
            canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
        except (msgspec.DecodeError, RecursionError):
            canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _scope(actor: Actor) -> str:
    # Keys are per caller: two shops may both use "key-1". Sellers are scoped by shop and user.
    return actor.key


Outcome = tuple[int, Any]


async def idempotent(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    *,
    key: str | None,
    call: Callable[[], Awaitable[Outcome]],
    required: bool = False,
) -> Response[Any]:
    """Run ``call`` (returning ``(status_code, body_struct)``) at most once per caller and key."""
    if key is None:
        if required:
            raise ValidationFailed("this endpoint requires an Idempotency-Key header", field="Idempotency-Key")
        status, body = await call()
        return Response(content=body, status_code=status)
    key = key.strip()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not _KEY.match(key):
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters", field="header:Idempotency-Key"
        )
    actor: Actor = request.user
    scope = _scope(actor)
    print_ = fingerprint(request.method, request.url.path, await request.body())
    table = IdempotencyRecord.__table__
    claimed = await session.execute(
        dialect_insert(session.get_bind().dialect.name, table)
        .values(actor_id=scope, key=key, fingerprint=print_, status_code=0, body=b"", created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(table.c.key)
    )
    if claimed.first() is None:  # the key exists: replay (or refuse) rather than run again
        stored = (
            await session.execute(
                select(IdempotencyRecord.fingerprint, IdempotencyRecord.status_code, IdempotencyRecord.body).where(
                    IdempotencyRecord.actor_id == scope, IdempotencyRecord.key == key
                )
            )
        ).one()
        if stored.fingerprint != print_:
            raise BusinessRuleViolation(
                "this Idempotency-Key was already used with a different request", code="idempotency.key_reused"
            )
        return Response(
            content=stored.body,
            status_code=stored.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    status, body = await call()
    encoded = msgspec.json.encode(body)
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.actor_id == scope, IdempotencyRecord.key == key)
        .values(status_code=status, body=encoded)
    )
    return Response(content=encoded, status_code=status, media_type="application/json")


async def prune_expired(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Forget keys older than 24 hours (the worker calls this)."""
    cutoff = (now or utcnow()) - KEY_TTL
    result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
