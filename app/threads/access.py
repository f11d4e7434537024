"""Who may reach a thread: the resource a thread is for the policy, and the one check (404 for a thread the
caller may not see, 403 for one it may see but not act on) that opening, reading and posting share."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import Forbidden, NotFound
from app.permissions.enforcer import Resource, is_allowed
from app.threads.models import Thread


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


async def load_for(session: AsyncSession, actor: Actor, thread_id: str, action: str) -> Thread:
    thread = await session.get(Thread, thread_id)
    if thread is None:
        raise NotFound(f"thread {thread_id!r} does not exist")
    check_thread_access(actor, thread_resource(thread.audience, thread.buyer_id, thread.seller_id), action, thread_id)
    return thread
