"""Litestar guards over the policy, for checks that need no resource (may this role ever do X?).

Checks on a particular resource happen in services through :func:`app.permissions.service.authorize`,
which answers 404 for a resource the caller may not see and 403 for one it may see but not change.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.auth import Actor
from app.errors import Forbidden
from app.permissions.enforcer import may_ever


def allow(kind: str, action: str) -> Any:
    """A guard letting through roles that the policy allows ``action`` on some ``kind``."""

    # async: Litestar would run a sync guard in a worker thread, a thread hop on every request.
    async def guard(connection: ASGIConnection[Any, Actor, Any, Any], _: BaseRouteHandler) -> None:
        if not may_ever(connection.user, kind, action):
            raise Forbidden(f"the {connection.user.role} role may not {action} {kind}s")

    guard.__name__ = f"allow_{kind}_{action}"
    return guard
