"""Who reads payouts and balances is the policy's ``payout`` lines: the list's SQL predicate agrees with
the enforcer for every role and shop, and only a shop's members (its own), finance and admins read them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, insert, select

from app.auth import TOKEN_ROLES, Actor, Role
from app.models import metadata
from app.payouts.models import Payout
from app.payouts.payout_views import readable_payouts
from app.permissions.enforcer import Resource, is_allowed

SHOPS = ["s1", "s2"]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[Payout.__table__])  # type: ignore[list-item]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Payout),
            [
                {
                    "id": f"po_{shop}",
                    "seller_id": shop,
                    "order_id": f"o_{shop}",
                    "amount": 1,
                    "currency": "EUR",
                    "debt_netted": 0,
                    "reversed": 0,
                    "status": "paid",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for shop in SHOPS
            ],
        )
    yield engine
    engine.dispose()


@pytest.mark.parametrize("role", sorted(TOKEN_ROLES))
@pytest.mark.parametrize("own_shop", SHOPS)
def test_the_payouts_list_predicate_agrees_with_the_enforcer(engine: Engine, role: str, own_shop: str) -> None:
    actor = Actor(id="u1", role=Role(role), seller_id=own_shop if role == "seller" else "")
    with engine.connect() as conn:
        listed = set(conn.scalars(select(Payout.seller_id).where(readable_payouts(actor))))
    for shop in SHOPS:
        allowed = is_allowed(actor, Resource(kind="payout", seller_id=shop), "read")
        assert (shop in listed) == allowed
        expected = role in ("finance", "admin") or (role == "seller" and shop == own_shop)
        assert allowed == expected, (role, shop)
