"""SQL predicates compiled from the Casbin policy, for list queries, event replay and fan-out.

The enforcer answers "may this actor read this one thread?". A list cannot ask that row by row without
loading what the caller may not see, so this module turns the same policy lines into a WHERE clause:
for each relation the role holds (``any``, ``buyer``, ``seller``), the resource kinds it holds it for. A
seller therefore gets ``seller_id = :shop AND audience IN (...)``, which the (seller_id, last_message_at,
id) index answers directly. ``tests/unit/test_visibility.py`` proves the two agree case by case.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from app.auth import Actor
from app.permissions.enforcer import relations_for


def kinds_by_relation(role: str, kinds: list[str], action: str = "read") -> dict[str, list[str]]:
    by_relation: dict[str, list[str]] = defaultdict(list)
    for kind in kinds:
        for relation in relations_for(role, kind, action):
            by_relation[relation].append(kind)
    return dict(by_relation)


def visible_resources(
    actor: Actor,
    *,
    kind: Any,
    buyer_id: Any,
    seller_id: Any,
    kinds: dict[str, str],
    action: str = "read",
) -> ColumnElement[bool]:
    """``kinds`` maps each policy kind (``thread:tripartite``) to the value ``kind`` holds for it."""
    clauses: list[ColumnElement[bool]] = []
    for relation, allowed in kinds_by_relation(actor.role.value, list(kinds), action).items():
        values = [kinds[k] for k in allowed]
        of_kind = true() if len(values) == len(kinds) else kind.in_(values)
        if relation == "any":
            clauses.append(of_kind)
        elif relation == "buyer":
            clauses.append(and_(buyer_id == actor.id, of_kind))
        elif relation == "seller":
            if actor.seller_id:
                clauses.append(and_(seller_id == actor.seller_id, of_kind))
        else:
            raise ValueError(f"policy relation {relation!r} has no SQL form; extend visibility.py")
    if not clauses:
        return false()
    return clauses[0] if len(clauses) == 1 else or_(*clauses)


def visible_threads(
    actor: Actor, *, audience: Any, buyer_id: Any, seller_id: Any, audiences: list[str], action: str = "read"
) -> ColumnElement[bool]:
    return visible_resources(
        actor,
        kind=audience,
        buyer_id=buyer_id,
        seller_id=seller_id,
        kinds={f"thread:{a}": a for a in audiences},
        action=action,
    )
