"""Resource checks for services: invisible means 404, visible-but-not-allowed means 403."""

from __future__ import annotations

from app.auth import Actor
from app.errors import Forbidden, NotFound
from app.permissions.enforcer import Resource, is_allowed


def authorize(actor: Actor, resource: Resource, action: str, *, label: str, resource_id: str) -> None:
    if action != "read" and not is_allowed(actor, resource, "read"):
        raise NotFound(f"{label} {resource_id!r} does not exist")
    if not is_allowed(actor, resource, action):
        if action == "read":
            raise NotFound(f"{label} {resource_id!r} does not exist")
        raise Forbidden(f"you may not {action} this {label}")
