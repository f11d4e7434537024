"""Threads and messages: open, list, read, post, mark read. Visibility comes from app/permissions."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth import Actor
from app.db import dialect_insert, utcnow
from app.errors import BusinessRuleViolation, Forbidden, NotFound, ValidationFailed
from app.events import service as events
from app.events.service import reader_key
from app.orders.models import Order
from app.orders.service import resource_of as order_resource
from app.paging import next_cursor, window
from app.permissions import disclosure
from app.permissions.enforcer import Resource, is_allowed
from app.permissions.visibility import visible_threads
from app.schemas import Page, decode_cursor
from app.sellers.models import Seller
from app.threads import attachments as attachment_service
from app.threads import macros as macro_service
from app.threads.models import Message, ReadCursor, Thread
from app.threads.rules import awaiting_reply_from, clean_body, clean_subject, party_of
from app.threads.schemas import (
    Audience,
    Author,
    MessageCreate,
    MessageRead,
    ThreadCreate,
    ThreadCreated,
    ThreadRead,
)

ALL_AUDIENCES = [a.value for a in Audience]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def thread_resource(audience: str, buyer_id: str | None, seller_id: str | None) -> Resource:
    return Resource(kind=f"thread:{audience}", buyer_id=buyer_id or "", seller_id=seller_id or "")


def check_thread_access(actor: Actor, resource: Resource, action: str, thread_id: str) -> None:
    """404 when the caller may not see the thread at all, 403 when it may see but not ``action``."""
    if not is_allowed(actor, resource, "read"):
        raise NotFound(f"thread {thread_id!r} does not exist")
    if action != "read" and not is_allowed(actor, resource, action):
        raise Forbidden(f"you may not {action} in this thread")


# --- opening -------------------------------------------------------------------------------------------


async def _parties(session: AsyncSession, actor: Actor, data: ThreadCreate) -> tuple[str | None, str | None]:
    """The buyer and shop a new thread concerns: from its order, else from the caller or the body."""
    audience = data.audience
    if data.order_id is not None:
        order = await session.get(Order, data.order_id)
        if order is None or not is_allowed(actor, order_resource(order), "read"):
            raise NotFound(f"order {data.order_id!r} does not exist")
        for field, given, actual in (
            ("buyer_id", data.buyer_id, order.buyer_id),
            ("seller_id", data.seller_id, order.seller_id),
        ):
            if given is not None and given != actual:
                raise BusinessRuleViolation(
                    f"{field} {given!r} is not the order's {field}", code="thread.party_mismatch", field=field
                )
        return order.buyer_id, order.seller_id
    if audience in (Audience.TRIPARTITE, Audience.BUYER_SELLER):
        raise ValidationFailed(f"a {audience} thread needs an order_id", field="order_id")

    buyer_id, seller_id = data.buyer_id, data.seller_id
    if actor.role == "buyer":
        if seller_id is not None or buyer_id not in (None, actor.id):
            raise BusinessRuleViolation("a buyer opens threads about itself only", code="thread.party_mismatch")
        buyer_id = actor.id
    elif actor.role == "seller":
        if buyer_id is not None or seller_id not in (None, actor.seller_id):
            raise BusinessRuleViolation("a seller opens threads about its own shop", code="thread.party_mismatch")
        seller_id = actor.seller_id
    if audience == Audience.OPERATOR_SELLER and seller_id is None:
        raise ValidationFailed("an operator_seller thread needs a seller_id", field="seller_id")
    if audience == Audience.OPERATOR_BUYER and buyer_id is None:
        raise ValidationFailed("an operator_buyer thread needs a buyer_id", field="buyer_id")
    if seller_id is not None and await session.get(Seller, seller_id) is None:
        raise BusinessRuleViolation(f"seller {seller_id!r} is unknown", code="thread.unknown_seller")
    return buyer_id, seller_id


async def open_thread(session: AsyncSession, *, actor: Actor, data: ThreadCreate) -> ThreadCreated:
    subject = clean_subject(data.subject)
    body = clean_body(data.body)
    buyer_id, seller_id = await _parties(session, actor, data)
    if not is_allowed(actor, thread_resource(data.audience, buyer_id, seller_id), "open"):
        raise Forbidden(f"a {actor.role} may not open a {data.audience} thread here")

    attachments = await attachment_service.claim_for_message(session, actor=actor, ids=data.attachment_ids)
    return await create_thread(
        session,
        actor=actor,
        audience=data.audience,
        subject=subject,
        body=body,
        order_id=data.order_id,
        buyer_id=buyer_id,
        seller_id=seller_id,
        attachments=attachments,
    )


async def create_thread(
    session: AsyncSession,
    *,
    actor: Actor,
    audience: Audience,
    subject: str,
    body: str,
    order_id: str | None,
    buyer_id: str | None,
    seller_id: str | None,
    dispute_id: str | None = None,
    attachments: list[Any] | None = None,
) -> ThreadCreated:
    """Insert a thread with its first message and events. Callers have checked who may open it."""
    attachments = attachments or []
    now = utcnow()
    thread_id = new_id("thr")
    session.add(
        Thread(
            id=thread_id,
            audience=audience.value,
            subject=subject,
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=seller_id,
            dispute_id=dispute_id,
            created_by=actor.id,
            created_at=now,
            last_message_at=now,
            message_count=1,
            last_author_party=party_of(actor).value,
        )
    )
    await session.flush()
    message = await _insert_message(session, actor=actor, thread_id=thread_id, seq=1, body=body, now=now)
    await attachment_service.link(session, message_id=message.message_id, attachments=attachments)
    message.attachments = attachments
    await _advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=1)
    created = ThreadCreated(
        thread_id=thread_id,
        audience=audience,
        subject=subject,
        order_id=order_id,
        seller_id=seller_id,
        buyer_id=buyer_id,
        dispute_id=dispute_id,
        last_message_at=now,
        unread_count=0,
        awaiting_reply_from=awaiting_reply_from(audience, party_of(actor)),
        created_at=now,
        first_message=message,
    )
    kind = f"thread:{audience.value}"
    as_others_see_it = ThreadRead(**{f: getattr(created, f) for f in ThreadRead.__struct_fields__})
    as_others_see_it.unread_count = 1
    for event_type, payload in (("thread.created", as_others_see_it), ("message.created", message)):
        await events.append(
            session,
            type=event_type,
            kind=kind,
            buyer_id=buyer_id,
            seller_id=seller_id,
            thread_id=thread_id,
            actor=reader_key(actor),
            payload=payload,
            now=now,
        )
    return created


async def post_to_party(
    session: AsyncSession,
    *,
    actor: Actor,
    dispute_id: str,
    order_id: str,
    audience: Audience,
    buyer_id: str | None,
    seller_id: str | None,
    subject: str,
    body: str,
) -> MessageRead:
    """Post in the dispute's thread of ``audience`` (one party and the operator), opening it the first
    time. Operator questions (request_info) and the service's own notices (a promo code) go there."""
    existing = await session.scalar(
        select(Thread.id).where(Thread.dispute_id == dispute_id, Thread.audience == audience.value).limit(1)
    )
    if existing is not None:
        return await post_message(session, actor=actor, thread_id=existing, data=MessageCreate(body=body))
    if not is_allowed(actor, thread_resource(audience.value, buyer_id, seller_id), "open"):
        raise Forbidden(f"a {actor.role} may not open a {audience} thread here")
    created = await create_thread(
        session,
        actor=actor,
        audience=audience,
        subject=subject,
        body=clean_body(body),
        order_id=order_id,
        buyer_id=buyer_id,
        seller_id=seller_id,
        dispute_id=dispute_id,
    )
    return created.first_message


# --- reading -------------------------------------------------------------------------------------------


def _thread_columns(actor: Actor) -> Any:
    reader = reader_key(actor)
    unread = (Thread.message_count - func.coalesce(ReadCursor.last_read_seq, 0)).label("unread_count")
    return (
        select(
            Thread.id,
            Thread.audience,
            Thread.subject,
            Thread.order_id,
            Thread.seller_id,
            Thread.buyer_id,
            Thread.dispute_id,
            Thread.last_message_at,
            Thread.last_author_party,
            Thread.created_at,
            unread,
        ).outerjoin(ReadCursor, and_(ReadCursor.thread_id == Thread.id, ReadCursor.reader == reader)),
        unread,
    )


def _to_read(row: Any) -> ThreadRead:
    return ThreadRead(
        thread_id=row.id,
        audience=Audience(row.audience),
        subject=row.subject,
        order_id=row.order_id,
        seller_id=row.seller_id,
        buyer_id=row.buyer_id,
        dispute_id=row.dispute_id,
        last_message_at=row.last_message_at,
        unread_count=max(int(row.unread_count), 0),
        awaiting_reply_from=awaiting_reply_from(row.audience, row.last_author_party),
        created_at=row.created_at,
    )


def _visible(actor: Actor, action: str = "read") -> Any:
    return visible_threads(
        actor,
        audience=Thread.audience,
        buyer_id=Thread.buyer_id,
        seller_id=Thread.seller_id,
        audiences=ALL_AUDIENCES,
        action=action,
    )


async def list_threads(
    session: AsyncSession,
    *,
    actor: Actor,
    limit: int,
    cursor: str | None,
    audience: Audience | None,
    order_id: str | None,
    dispute_id: str | None,
    unread: bool,
) -> Page[ThreadRead]:
    stmt, unread_column = _thread_columns(actor)
    stmt = stmt.where(_visible(actor))
    if audience is not None:
        stmt = stmt.where(Thread.audience == audience.value)
    if order_id is not None:
        stmt = stmt.where(Thread.order_id == order_id)
    if dispute_id is not None:
        stmt = stmt.where(Thread.dispute_id == dispute_id)
    if unread:
        stmt = stmt.where(unread_column > 0)
    if cursor is not None:
        last_at, last_id = decode_cursor(cursor, (datetime, str))
        stmt = stmt.where(tuple_(Thread.last_message_at, Thread.id) < tuple_(last_at, last_id))
    stmt = stmt.order_by(Thread.last_message_at.desc(), Thread.id.desc()).limit(limit + 1)
    rows, more = window((await session.execute(stmt)).all(), limit)
    items = [_to_read(row) for row in rows]
    return Page(
        items=items, next_cursor=next_cursor(items, more, lambda t: (t.last_message_at.isoformat(), t.thread_id))
    )


async def get_thread(session: AsyncSession, *, actor: Actor, thread_id: str) -> ThreadRead:
    stmt, _ = _thread_columns(actor)
    row = (await session.execute(stmt.where(Thread.id == thread_id))).first()
    if row is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    check_thread_access(actor, thread_resource(row.audience, row.buyer_id, row.seller_id), "read", thread_id)
    return _to_read(row)


async def _load_for(session: AsyncSession, actor: Actor, thread_id: str, action: str) -> Thread:
    thread = await session.get(Thread, thread_id)
    if thread is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    check_thread_access(actor, thread_resource(thread.audience, thread.buyer_id, thread.seller_id), action, thread_id)
    return thread


async def list_messages(
    session: AsyncSession, *, actor: Actor, thread_id: str, after: str | None, limit: int
) -> Page[MessageRead]:
    await _load_for(session, actor, thread_id, "read")
    stmt = select(Message).where(Message.thread_id == thread_id)
    if after is not None:
        after_seq = await session.scalar(select(Message.seq).where(Message.id == after, Message.thread_id == thread_id))
        if after_seq is None:
            raise ValidationFailed(f"message {after!r} is not in this thread", field="query:after")
        stmt = stmt.where(Message.seq > after_seq)
    rows = list((await session.scalars(stmt.order_by(Message.seq).limit(limit + 1))).all())
    page = rows[:limit]
    files = await attachment_service.for_messages(session, [m.id for m in page])
    staff_ids = disclosure.sees_staff_ids(actor)
    items = [_message_read(m, files.get(m.id, []), staff_ids=staff_ids) for m in page]
    return Page(items=items, next_cursor=page[-1].id if len(rows) > limit else None)


def _message_read(message: Message, files: list[Any], *, staff_ids: bool) -> MessageRead:
    # Operator staff are shown by role and name to those the policy keeps staff ids from (buyers, shops).
    hidden = not staff_ids and message.author_role in disclosure.STAFF_ROLES
    return MessageRead(
        message_id=message.id,
        thread_id=message.thread_id,
        author=Author(id=None if hidden else message.author_id, role=message.author_role, name=message.author_name),
        body=message.body,
        attachments=files,
        created_at=message.created_at,
    )


# --- writing -------------------------------------------------------------------------------------------
# The message write path is the hottest path of the service, so it runs prebuilt Core statements on the
# session's connection: no ORM unit of work, no statement construction or cache-key work per request.

_threads: Table = Thread.__table__  # type: ignore[assignment]
_messages: Table = Message.__table__  # type: ignore[assignment]
_cursors: Table = ReadCursor.__table__  # type: ignore[assignment]

# One statement takes the thread's row lock, numbers the message and moves the activity date; the policy
# check follows on what it returns, and a refusal rolls all of it back.
_BUMP_THREAD = (
    update(_threads)
    .where(_threads.c.id == bindparam("thread_id"))
    .values(
        message_count=_threads.c.message_count + 1,
        last_message_at=bindparam("now", type_=_threads.c.last_message_at.type),
        last_author_party=bindparam("party"),
    )
    .returning(_threads.c.audience, _threads.c.buyer_id, _threads.c.seller_id, _threads.c.message_count)
)
_INSERT_MESSAGE = insert(_messages)


@lru_cache(maxsize=4)
def _advance_cursor_statement(dialect_name: str) -> Any:
    """Move a read cursor forward, never back (two tabs marking read out of order stay correct)."""
    statement = dialect_insert(dialect_name, _cursors)
    return statement.on_conflict_do_update(
        index_elements=[_cursors.c.thread_id, _cursors.c.reader],
        set_={
            "last_read_seq": case(
                (_cursors.c.last_read_seq < statement.excluded.last_read_seq, statement.excluded.last_read_seq),
                else_=_cursors.c.last_read_seq,
            )
        },
    )


async def post_message(session: AsyncSession, *, actor: Actor, thread_id: str, data: MessageCreate) -> MessageRead:
    if data.macro_id is not None:
        if data.body is not None:
            raise ValidationFailed("send either body or macro_id, not both", field="macro_id")
        thread = await _load_for(session, actor, thread_id, "write")
        body = clean_body(await macro_service.render(session, actor=actor, macro_id=data.macro_id, thread=thread))
    else:
        body = clean_body(data.body)
    attachments = await attachment_service.claim_for_message(session, actor=actor, ids=data.attachment_ids)

    now = utcnow()
    connection = await session.connection()
    if connection.dialect.name == "postgresql" and not attachments:
        session.info["events_appended"] = True
        return await _post_in_one_round_trip(connection, actor=actor, thread_id=thread_id, body=body, now=now)
    bumped = (
        await connection.execute(_BUMP_THREAD, {"thread_id": thread_id, "now": now, "party": party_of(actor).value})
    ).first()
    if bumped is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    check_thread_access(actor, thread_resource(bumped.audience, bumped.buyer_id, bumped.seller_id), "write", thread_id)
    message = await _insert_message(
        session, actor=actor, thread_id=thread_id, seq=bumped.message_count, body=body, now=now
    )
    if attachments:
        await attachment_service.link(session, message_id=message.message_id, attachments=attachments)
        message.attachments = attachments
    await _advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=bumped.message_count)
    await events.append(
        session,
        type="message.created",
        kind=f"thread:{bumped.audience}",
        buyer_id=bumped.buyer_id,
        seller_id=bumped.seller_id,
        thread_id=thread_id,
        actor=reader_key(actor),
        payload=message,
        now=now,
    )
    return message


# PostgreSQL runs the three writes of a post as one statement (data-modifying CTEs): one round trip
# instead of three. The policy check still happens before anything commits: a refusal raises and the
# request's transaction rolls the whole statement back.
_POST_PG = text(
    """
    WITH bumped AS (
        UPDATE threads
           SET message_count = message_count + 1, last_message_at = :now, last_author_party = :party
         WHERE id = :thread_id
     RETURNING audience, buyer_id, seller_id, message_count
    ), inserted AS (
        INSERT INTO messages (id, thread_id, seq, author_id, author_role, author_name, body, created_at)
        SELECT :message_id, :thread_id, message_count, :author_id, :author_role, :author_name, :body, :now
          FROM bumped
     RETURNING seq
    ), cursor_moved AS (
        INSERT INTO read_cursors (thread_id, reader, last_read_seq)
        SELECT :thread_id, :reader, seq FROM inserted
        ON CONFLICT (thread_id, reader)
        DO UPDATE SET last_read_seq = GREATEST(read_cursors.last_read_seq, EXCLUDED.last_read_seq)
    ), event AS (
        INSERT INTO events (type, resource_kind, buyer_id, seller_id, thread_id, actor, recipient, payload, created_at)
        SELECT 'message.created', 'thread:' || b.audience, b.buyer_id, b.seller_id, :thread_id, :reader, NULL,
               :payload, :now
          FROM bumped b, inserted
    )
    SELECT audience, buyer_id, seller_id, message_count FROM bumped
    """
)


async def _post_in_one_round_trip(
    connection: AsyncConnection, *, actor: Actor, thread_id: str, body: str, now: datetime
) -> MessageRead:
    message_id = new_id("msg")
    author = Author(id=actor.id, role=actor.role.value, name=actor.name or actor.id)
    message = MessageRead(
        message_id=message_id, thread_id=thread_id, author=author, body=body, attachments=[], created_at=now
    )
    bumped = (
        await connection.execute(
            _POST_PG,
            {
                "payload": events.encode(message),
                "thread_id": thread_id,
                "now": now,
                "party": party_of(actor).value,
                "message_id": message_id,
                "author_id": author.id,
                "author_role": author.role,
                "author_name": author.name,
                "body": body,
                "reader": reader_key(actor),
            },
        )
    ).first()
    if bumped is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    check_thread_access(actor, thread_resource(bumped.audience, bumped.buyer_id, bumped.seller_id), "write", thread_id)
    return message


async def _insert_message(
    session: AsyncSession, *, actor: Actor, thread_id: str, seq: int, body: str, now: datetime
) -> MessageRead:
    message_id = new_id("msg")
    author = Author(id=actor.id, role=actor.role.value, name=actor.name or actor.id)
    connection = await session.connection()
    await connection.execute(
        _INSERT_MESSAGE,
        {
            "id": message_id,
            "thread_id": thread_id,
            "seq": seq,
            "author_id": author.id,
            "author_role": author.role,
            "author_name": author.name,
            "body": body,
            "created_at": now,
        },
    )
    return MessageRead(
        message_id=message_id, thread_id=thread_id, author=author, body=body, attachments=[], created_at=now
    )


async def _advance_cursor(session: AsyncSession, *, thread_id: str, reader: str, seq: int) -> None:
    connection = await session.connection()
    await connection.execute(
        _advance_cursor_statement(connection.dialect.name),
        {"thread_id": thread_id, "reader": reader, "last_read_seq": seq},
    )


async def mark_read(session: AsyncSession, *, actor: Actor, thread_id: str, message_id: str) -> None:
    await _load_for(session, actor, thread_id, "read")
    seq = await session.scalar(select(Message.seq).where(Message.id == message_id, Message.thread_id == thread_id))
    if seq is None:
        raise ValidationFailed(f"message {message_id!r} is not in this thread", field="message_id")
    await _advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=seq)
    thread = await get_thread(session, actor=actor, thread_id=thread_id)
    await events.append(
        session,
        type="thread.read",
        kind=f"thread:{thread.audience.value}",
        buyer_id=thread.buyer_id,
        seller_id=thread.seller_id,
        thread_id=thread_id,
        actor=reader_key(actor),
        recipient=reader_key(actor),
        payload=thread,
    )
