"""The Casbin enforcer, loaded once, and the resource shapes it is asked about."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import casbin

from app.auth import Actor

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model.conf"
POLICY = HERE / "policy.csv"


@dataclass(frozen=True, slots=True)
class Subject:
    """What the matcher sees of the caller (``r.sub``)."""

    id: str
    role: str
    seller_id: str


@dataclass(frozen=True, slots=True)
class Resource:
    """What the matcher sees of a resource (``r.obj``): its kind and the parties it belongs to."""

    kind: str
    buyer_id: str = ""
    seller_id: str = ""


@lru_cache(maxsize=1)
def get_enforcer() -> casbin.Enforcer:
    return casbin.Enforcer(str(MODEL), str(POLICY))


def subject_of(actor: Actor) -> Subject:
    return Subject(id=actor.id, role=actor.role.value, seller_id=actor.seller_id)


def is_allowed(actor: Actor, resource: Resource, action: str) -> bool:
    """The enforcer's decision, memoized on what the matcher can see.

    The matcher (model.conf) looks at the role, the kind, the action and two facts: whether the
    resource's buyer is the caller and whether its shop is the caller's. So the decision for a request
    equals the decision for a canonical request with the same five values, which is computed once by the
    enforcer and cached (a Casbin call costs ~70 us; a hot request path makes several).
    ``tests/unit/test_visibility.py`` checks this against the uncached enforcer.
    """
    buyer_match = resource.buyer_id == actor.id and bool(actor.id)
    seller_match = bool(actor.seller_id) and resource.seller_id == actor.seller_id
    return _decide(actor.role.value, resource.kind, action, buyer_match, seller_match, bool(actor.seller_id))


@lru_cache(maxsize=8192)
def _decide(role: str, kind: str, action: str, buyer_match: bool, seller_match: bool, has_shop: bool) -> bool:
    subject = Subject(id="caller", role=role, seller_id="shop" if has_shop else "")
    resource = Resource(
        kind=kind,
        buyer_id="caller" if buyer_match else "someone-else",
        seller_id="shop" if seller_match else "another-shop",
    )
    return bool(get_enforcer().enforce(subject, resource, action))


def enforce_uncached(actor: Actor, resource: Resource, action: str) -> bool:
    return bool(get_enforcer().enforce(subject_of(actor), resource, action))


def may_ever(actor: Actor, kind: str, action: str) -> bool:
    """Whether any policy line lets this role take ``action`` on some resource of ``kind``.

    ``kind`` may end with ``*`` to mean any kind with that prefix (``thread:*``: any audience).
    """
    if kind.endswith("*"):
        prefix = kind[:-1]
        return any(relations_for(actor.role.value, k, action) for k in _kinds() if k.startswith(prefix))
    return bool(relations_for(actor.role.value, kind, action))


@lru_cache(maxsize=1)
def _kinds() -> frozenset[str]:
    return frozenset(p[1] for p in get_enforcer().get_policy())


def relations_for(role: str, kind: str, action: str) -> frozenset[str]:
    """The relations under which ``role`` (with the roles it inherits) may take ``action`` on ``kind``."""
    return _relations(role, kind, action)


@lru_cache(maxsize=4096)
def _relations(role: str, kind: str, action: str) -> frozenset[str]:
    enforcer = get_enforcer()
    roles = {role, *enforcer.get_implicit_roles_for_user(role)}
    return frozenset(
        rel
        for p_role, p_kind, p_act, rel in enforcer.get_policy()
        if p_role in roles and p_kind == kind and p_act == action
    )
