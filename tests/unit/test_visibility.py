"""The SQL predicate used by lists is compiled from the Casbin policy; here it must agree with the
enforcer on every generated (actor, thread) pair — at least 10 000 pairs per run."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, insert, select

from app.auth import TOKEN_ROLES, Actor, Role
from app.models import metadata
from app.permissions.enforcer import Resource, enforce_uncached, is_allowed
from app.permissions.visibility import visible_threads
from app.threads.access import thread_resource
from app.threads.models import Thread
from app.threads.schemas import Audience

AUDIENCES = [a.value for a in Audience]
BUYERS = ["b1", "b2", "b3"]
SHOPS = ["s1", "s2", "s3"]
EXAMPLES, THREADS, ACTORS = 12, 100, 10
checked = itertools.count()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[Thread.__table__])  # type: ignore[list-item]
    yield engine
    engine.dispose()


actors = st.builds(
    lambda role, user, shop: Actor(id=user, role=Role(role), seller_id=shop if role == "seller" else ""),
    st.sampled_from(sorted(TOKEN_ROLES)),
    st.sampled_from([*BUYERS, "u9"]),
    st.sampled_from(SHOPS),
)
threads = st.tuples(st.sampled_from(AUDIENCES), st.sampled_from([*BUYERS, None]), st.sampled_from([*SHOPS, None]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(threads, min_size=THREADS, max_size=THREADS),
    st.lists(actors, min_size=ACTORS, max_size=ACTORS),
    st.sampled_from(["read", "write", "open"]),
)
def test_sql_predicate_agrees_with_the_enforcer(
    engine: Engine, rows: list[tuple[str, str | None, str | None]], callers: list[Actor], action: str
) -> None:
    ids = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(len(rows))]
    with engine.begin() as conn:
        conn.execute(delete(Thread))
        conn.execute(
            insert(Thread),
            [
                {
                    "id": tid,
                    "audience": a,
                    "subject": "s",
                    "buyer_id": b,
                    "seller_id": s,
                    "created_by": "x",
                    "message_count": 0,
                }
                for tid, (a, b, s) in zip(ids, rows, strict=True)
            ],
        )
        for actor in callers:
            predicate = visible_threads(
                actor,
                audience=Thread.audience,
                buyer_id=Thread.buyer_id,
                seller_id=Thread.seller_id,
                audiences=AUDIENCES,
                action=action,
            )
            listed = set(conn.scalars(select(Thread.id).where(predicate)))
            for tid, (audience, buyer_id, seller_id) in zip(ids, rows, strict=True):
                expected = is_allowed(actor, thread_resource(audience, buyer_id, seller_id), action)
                assert (tid in listed) == expected, (actor, audience, buyer_id, seller_id, action)
                next(checked)


def test_enough_cases_were_checked() -> None:
    # Runs after the property test in this module (pytest keeps file order).
    assert next(checked) >= EXAMPLES * THREADS * ACTORS


def test_roles_without_threads_compile_to_false() -> None:
    for role in (Role.FINANCE, Role.MARKETPLACE):
        predicate = visible_threads(
            Actor(id="x", role=role),
            audience=Thread.audience,
            buyer_id=Thread.buyer_id,
            seller_id=Thread.seller_id,
            audiences=AUDIENCES,
        )
        assert str(predicate.compile(compile_kwargs={"literal_binds": True})) in {"false", "0 = 1"}


def test_a_seller_predicate_is_one_indexable_clause() -> None:
    predicate = visible_threads(
        Actor(id="u", role=Role.SELLER, seller_id="s1"),
        audience=Thread.audience,
        buyer_id=Thread.buyer_id,
        seller_id=Thread.seller_id,
        audiences=AUDIENCES,
    )
    sql = str(predicate.compile(compile_kwargs={"literal_binds": True}))
    assert sql.startswith("threads.seller_id = 's1' AND threads.audience IN")
    assert " OR " not in sql


resources = st.builds(
    lambda kind, buyer, shop: Resource(kind=kind, buyer_id=buyer, seller_id=shop),
    st.sampled_from([f"thread:{a}" for a in AUDIENCES] + ["order", "seller", "macro", "attachment", "unknown"]),
    st.sampled_from([*BUYERS, "", "u9"]),
    st.sampled_from([*SHOPS, ""]),
)


@settings(max_examples=3000, deadline=None)
@given(actors, resources, st.sampled_from(["read", "write", "open", "delete"]))
def test_memoized_decisions_equal_the_enforcer(actor: Actor, resource: Resource, action: str) -> None:
    assert is_allowed(actor, resource, action) == enforce_uncached(actor, resource, action)
