"""Messages: list a thread's messages, post one (the hot path: one statement on PostgreSQL), move a
reader's cursor. Messages are evidence: there is no edit and no delete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, case, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth import Actor
from app.db import dialect_insert, utcnow
from app.errors import NotFound, ValidationFailed
from app.events import service as events
from app.events.service import reader_key
from app.permissions import disclosure
from app.schemas import Page
from app.threads import access
from app.threads import attachments as attachment_service
from app.threads import macros as macro_service
from app.threads.models import Message, ReadCursor, Thread
from app.threads.rules import clean_body, party_of
from app.threads.schemas import (
    Author,
    MessageCreate,
    MessageRead,
)


async def list_messages(
    session: AsyncSession, *, actor: Actor, thread_id: str, after: str | None, limit: int
) -> Page[MessageRead]:
    await access.load_for(session, actor, thread_id, "read")
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


@dataclass(frozen=True, slots=True)
class DisputeMessage:
    """A message is being posted in a thread (perhaps a dispute's): what the disputes need to know of it."""

    thread_id: str
    author_role: str
    at: datetime


# Threads sit below disputes, so they call back (in the posting transaction) through this function, which
# app/main.py wires to the disputes' first-response bookkeeping (app/disputes/milestones.py). It is called
# BEFORE the thread's row is locked: whatever it locks of the dispute comes first, the order of every path
# that locks a dispute and then posts in its threads (a promo code's notice, a request for information).
OnDisputeMessage = Callable[[AsyncSession, DisputeMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ThreadReactions:
    """What posting a message makes other domains do (a dependency of the threads controller)."""

    dispute_message: OnDisputeMessage | None = None


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
    .returning(
        _threads.c.audience,
        _threads.c.buyer_id,
        _threads.c.seller_id,
        _threads.c.message_count,
        _threads.c.dispute_id,
    )
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


async def post_message(
    session: AsyncSession,
    *,
    actor: Actor,
    thread_id: str,
    data: MessageCreate,
    on_dispute_message: OnDisputeMessage | None = None,
) -> MessageRead:
    """Post in a thread; ``on_dispute_message`` is told first (before the thread's row lock; a refusal by
    the policy check, after it, rolls its writes back with the rest)."""
    if data.macro_id is not None:
        if data.body is not None:
            raise ValidationFailed("send either body or macro_id, not both", field="macro_id")
        thread = await access.load_for(session, actor, thread_id, "write")
        body = clean_body(await macro_service.render(session, actor=actor, macro_id=data.macro_id, thread=thread))
    else:
        body = clean_body(data.body)
    attachments = await attachment_service.claim_for_message(session, actor=actor, ids=data.attachment_ids)

    now = utcnow()
    if on_dispute_message is not None:
        await on_dispute_message(session, DisputeMessage(thread_id, actor.role.value, now))
    connection = await session.connection()
    if connection.dialect.name == "postgresql" and not attachments:
        session.info["events_appended"] = True
        return await _post_in_one_round_trip(connection, actor=actor, thread_id=thread_id, body=body, now=now)
    bumped = (
        await connection.execute(_BUMP_THREAD, {"thread_id": thread_id, "now": now, "party": party_of(actor).value})
    ).first()
    if bumped is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    access.check_thread_access(
        actor, access.thread_resource(bumped.audience, bumped.buyer_id, bumped.seller_id), "write", thread_id
    )
    message = await insert_message(
        session, actor=actor, thread_id=thread_id, seq=bumped.message_count, body=body, now=now
    )
    if attachments:
        await attachment_service.link(session, message_id=message.message_id, attachments=attachments)
        message.attachments = attachments
    await advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=bumped.message_count)
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
     RETURNING audience, buyer_id, seller_id, message_count, dispute_id
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
    SELECT audience, buyer_id, seller_id, message_count, dispute_id FROM bumped
    """
)


async def _post_in_one_round_trip(
    connection: AsyncConnection, *, actor: Actor, thread_id: str, body: str, now: datetime
) -> MessageRead:
    message_id = access.new_id("msg")
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
    access.check_thread_access(
        actor, access.thread_resource(bumped.audience, bumped.buyer_id, bumped.seller_id), "write", thread_id
    )
    return message


async def insert_message(
    session: AsyncSession, *, actor: Actor, thread_id: str, seq: int, body: str, now: datetime
) -> MessageRead:
    message_id = access.new_id("msg")
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


async def advance_cursor(session: AsyncSession, *, thread_id: str, reader: str, seq: int) -> None:
    connection = await session.connection()
    await connection.execute(
        _advance_cursor_statement(connection.dialect.name),
        {"thread_id": thread_id, "reader": reader, "last_read_seq": seq},
    )
