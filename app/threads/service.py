"""Threads: open one (with its first message), list and read them. Messages are in messages.py, who
may reach a thread in access.py; visibility comes from app/permissions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import utcnow
from app.errors import BusinessRuleViolation, Forbidden, NotFound, ValidationFailed
from app.events import service as events
from app.events.service import reader_key
from app.orders.models import Order
from app.orders.service import resource_of as order_resource
from app.paging import next_cursor, window
from app.permissions.enforcer import is_allowed
from app.permissions.visibility import visible_threads
from app.schemas import Page, decode_cursor
from app.sellers.models import Seller
from app.threads import access, messages
from app.threads import attachments as attachment_service
from app.threads.models import Message, ReadCursor, Thread
from app.threads.rules import awaiting_reply_from, clean_body, clean_subject, party_of
from app.threads.schemas import (
    Audience,
    MessageCreate,
    MessageRead,
    ThreadCreate,
    ThreadCreated,
    ThreadRead,
)

ALL_AUDIENCES = [a.value for a in Audience]

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
    if not is_allowed(actor, access.thread_resource(data.audience, buyer_id, seller_id), "open"):
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
    thread_id = access.new_id("thr")
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
    message = await messages.insert_message(session, actor=actor, thread_id=thread_id, seq=1, body=body, now=now)
    await attachment_service.link(session, message_id=message.message_id, attachments=attachments)
    message.attachments = attachments
    await messages.advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=1)
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
        return await messages.post_message(session, actor=actor, thread_id=existing, data=MessageCreate(body=body))
    if not is_allowed(actor, access.thread_resource(audience.value, buyer_id, seller_id), "open"):
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
    access.check_thread_access(
        actor, access.thread_resource(row.audience, row.buyer_id, row.seller_id), "read", thread_id
    )
    return _to_read(row)


async def mark_read(session: AsyncSession, *, actor: Actor, thread_id: str, message_id: str) -> None:
    await access.load_for(session, actor, thread_id, "read")
    seq = await session.scalar(select(Message.seq).where(Message.id == message_id, Message.thread_id == thread_id))
    if seq is None:
        raise ValidationFailed(f"message {message_id!r} is not in this thread", field="message_id")
    await messages.advance_cursor(session, thread_id=thread_id, reader=reader_key(actor), seq=seq)
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
