"""Who may read and spend money is decided by the policy (app/permissions/policy.csv), like every other
resource: a buyer's wallet and the checkout's redemptions by the enforcer, the refunds list by the SQL
predicate compiled from the same lines — proven here to agree with the enforcer case by case."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, insert, select

from app.auth import TOKEN_ROLES, Actor, Role
from app.models import metadata
from app.orders.models import Order
from app.orders.service import readable_orders, resource_of
from app.payouts.credit import may_redeem, may_see_wallet
from app.permissions.enforcer import is_allowed

BUYERS = ["b1", "b2"]
SHOPS = ["s1", "s2"]
checked = itertools.count()

actors = st.builds(
    lambda role, user, shop: Actor(id=user, role=Role(role), seller_id=shop if role == "seller" else ""),
    st.sampled_from(sorted(TOKEN_ROLES)),
    st.sampled_from([*BUYERS, "u9"]),
    st.sampled_from(SHOPS),
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[Order.__table__])  # type: ignore[list-item]
    yield engine
    engine.dispose()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(BUYERS), st.sampled_from(SHOPS)), min_size=12, max_size=12),
    st.lists(actors, min_size=8, max_size=8),
)
def test_the_refunds_list_predicate_agrees_with_the_enforcer(
    engine: Engine, orders: list[tuple[str, str]], callers: list[Actor]
) -> None:
    now = datetime.now(UTC)
    ids = [f"o{i}-{uuid.uuid4().hex[:6]}" for i in range(len(orders))]
    with engine.begin() as conn:
        conn.execute(delete(Order))
        conn.execute(
            insert(Order),
            [
                {
                    "id": order_id,
                    "buyer_id": buyer,
                    "seller_id": shop,
                    "currency": "EUR",
                    "total_amount": 100,
                    "commission_amount": 10,
                    "payment_provider": "stripe",
                    "charge_id": f"ch_{order_id}",
                    "escrow_status": "held",
                    "revision": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for order_id, (buyer, shop) in zip(ids, orders, strict=True)
            ],
        )
        for actor in callers:
            listed = set(conn.scalars(select(Order.id).where(readable_orders(actor))))
            for order_id, (buyer, shop) in zip(ids, orders, strict=True):
                order = Order(id=order_id, buyer_id=buyer, seller_id=shop)
                assert (order_id in listed) == is_allowed(actor, resource_of(order), "read"), (actor, buyer, shop)
                next(checked)


def test_enough_list_cases_were_checked() -> None:
    assert next(checked) >= 20 * 12 * 8


@pytest.mark.parametrize("role", sorted(TOKEN_ROLES))
def test_a_wallet_is_read_by_its_buyer_operator_staff_finance_and_the_marketplace(role: str) -> None:
    seller_id = "s1" if role == "seller" else ""
    owner = Actor(id="b1", role=Role(role), seller_id=seller_id)  # same user id as the wallet's buyer
    other = Actor(id="u9", role=Role(role), seller_id=seller_id)
    everyone = role in {"agent", "arbitrator", "admin", "finance", "marketplace"}
    assert may_see_wallet(other, "b1") == everyone
    # Only a buyer is the wallet's owner: a shop member whose user id happens to be the buyer's is not.
    assert may_see_wallet(owner, "b1") == (everyone or role == "buyer")


@pytest.mark.parametrize("role", sorted(TOKEN_ROLES))
def test_only_the_marketplaces_checkout_spends_credit_and_redeems_promo_codes(role: str) -> None:
    actor = Actor(id="b1", role=Role(role), seller_id="s1" if role == "seller" else "")
    assert may_redeem(actor, "wallet", "b1") == (role == "marketplace")
    assert may_redeem(actor, "promo_code", "b1") == (role == "marketplace")
