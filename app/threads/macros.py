"""Canned answers with placeholders, rendered on the server for the thread they are posted in."""

from __future__ import annotations

import string
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import BusinessRuleViolation, NotFound
from app.permissions.enforcer import Resource, is_allowed
from app.sellers.models import Seller
from app.threads.models import Macro, Message, Thread
from app.threads.schemas import MacroCreate, MacroRead

PLACEHOLDERS = ("order_id", "buyer_id", "buyer_name", "seller_id", "seller_name", "thread_subject", "author_name")


def placeholders_in(template: str) -> list[str]:
    """The ``{names}`` a template uses; 422 for malformed braces or names we cannot fill."""
    try:
        names = [field for _, field, spec, conv in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise BusinessRuleViolation(
            f"the macro body is not a valid template: {exc} (write {{{{ and }}}} for literal braces)",
            code="macro.invalid_template",
        ) from None
    for name in names:
        if name not in PLACEHOLDERS:
            raise BusinessRuleViolation(
                f"unknown placeholder {{{name}}}; known: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
                code="macro.unknown_placeholder",
            )
    return list(dict.fromkeys(names))


def _scope(actor: Actor) -> str | None:
    """Operator staff share the operator's macros (seller_id null); a seller has its shop's."""
    return actor.seller_id if actor.role == "seller" else None


def _read(macro: Macro) -> MacroRead:
    return MacroRead(
        macro_id=macro.id,
        scope="operator" if macro.seller_id is None else f"seller:{macro.seller_id}",
        title=macro.title,
        body=macro.body,
        placeholders=placeholders_in(macro.body),
        created_at=macro.created_at,
    )


async def create_macro(session: AsyncSession, *, actor: Actor, data: MacroCreate) -> MacroRead:
    placeholders_in(data.body)
    scope = _scope(actor)
    if scope is not None and await session.get(Seller, scope) is None:
        raise BusinessRuleViolation(f"seller {scope!r} is unknown", code="macro.unknown_seller")
    macro = Macro(
        id=f"mac_{uuid.uuid4().hex}",
        seller_id=scope,
        title=data.title.strip(),
        body=data.body,
        created_by=actor.id,
    )
    session.add(macro)
    await session.flush()
    return _read(macro)


async def list_macros(session: AsyncSession, *, actor: Actor) -> list[MacroRead]:
    scope = _scope(actor)
    condition = Macro.seller_id.is_(None) if scope is None else Macro.seller_id == scope
    rows = await session.scalars(select(Macro).where(condition).order_by(Macro.title, Macro.id).limit(500))
    return [_read(m) for m in rows.all()]


async def render(session: AsyncSession, *, actor: Actor, macro_id: str, thread: Thread) -> str:
    macro = await session.get(Macro, macro_id)
    if macro is None or not is_allowed(actor, Resource(kind="macro", seller_id=macro.seller_id or ""), "read"):
        raise NotFound(f"macro {macro_id!r} does not exist")
    if macro.seller_id is None and actor.role == "seller":
        raise NotFound(f"macro {macro_id!r} does not exist")
    names = placeholders_in(macro.body)
    values: dict[str, Any] = {"thread_subject": thread.subject, "author_name": actor.name or actor.id}
    values["order_id"] = thread.order_id
    values["buyer_id"] = thread.buyer_id
    values["seller_id"] = thread.seller_id
    if "seller_name" in names and thread.seller_id:
        values["seller_name"] = await session.scalar(select(Seller.name).where(Seller.id == thread.seller_id))
    if "buyer_name" in names and thread.buyer_id:
        # We know a buyer's name from what they signed their messages with (the token's name claim).
        values["buyer_name"] = (
            await session.scalar(
                select(Message.author_name)
                .where(Message.thread_id == thread.id, Message.author_role == "buyer")
                .order_by(Message.seq.desc())
                .limit(1)
            )
            or thread.buyer_id
        )
    missing = [name for name in names if not values.get(name)]
    if missing:
        raise BusinessRuleViolation(f"this thread has no value for {{{missing[0]}}}", code="macro.not_applicable")
    return macro.body.format_map(values)
