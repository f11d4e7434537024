"""Money limits are per order, whatever way the money goes out: a shop's refund budget and an agent's
goodwill limit count every kind of compensation already granted on the order (refunds, credit notes,
promo codes; pending or succeeded) and what its disputes committed (an open offer, an accepted claim
waiting for the return), through POST /v1/refunds and the dispute actions alike, under the order's lock
— on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine
from app.disputes.resolution import refund_settled
from app.payouts import settlement
from app.payouts.gateway import PaymentProviderError
from app.settings import Settings
from tests.factories import Case, Tokens, World, money
from tests.fakes import FakeEscrow

Headers = dict[str, str]


def shop(
    client: TestClient[Any], auth: Tokens, world: World, *, budget: int | None = 5_000, total: int = 10_000
) -> Case:
    """A shop with ``budget`` and one order of ``total`` (two lines, so two disputes can be open on it)."""
    case = Case(client, auth, world, **({"refund_budget": money(budget)} if budget is not None else {}))
    half = total // 2
    lines = [
        {"line_id": line, "sku": f"SKU-{line}", "title": "Kettle", "quantity": 1, "unit_price": money(half)}
        for line in ("l1", "l2")
    ]
    case.order = world.order(case.buyer_id, case.shop, total=money(total), commission=money(total // 10), lines=lines)
    case.order_id = case.order["order_id"]
    return case


def refund(
    client: TestClient[Any], who: Headers, order_id: str, amount: int | None, expect: int = 201, **body: Any
) -> dict[str, Any]:
    fields = {"order_id": order_id, "kind": "partial", "funded_by": "seller", "reason": "goodwill", **body}
    if amount is not None:
        fields["amount"] = money(amount)
    response = client.post("/v1/refunds", json=fields, headers={**who, "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def open_on(case: Case, line: str, amount: int) -> dict[str, Any]:
    """The buyer asks for a partial refund of ``amount`` about one line."""
    return case.open(
        lines=[{"line_id": line, "quantity": 1}], requested={"type": "refund_partial", "amount": money(amount)}
    )


def partial(amount: int, **over: Any) -> dict[str, Any]:
    return {"type": "refund_partial", "amount": money(amount), "return_required": False, **over}


def test_a_shops_budget_is_per_order_not_per_request(client: TestClient[Any], auth: Tokens, world: World) -> None:
    case = shop(client, auth, world)  # budget 5 000, order 10 000
    assert refund(client, case.seller, case.order_id, 3_000)["status"] == "pending"
    over = refund(client, case.seller, case.order_id, 3_000, expect=422)  # 6 000 in all: refused
    assert (over["code"], over["budget"], over["used"], over["remaining"]) == (
        "refund.over_budget",
        5_000,
        3_000,
        2_000,
    )
    refund(client, case.seller, case.order_id, 2_000)
    assert refund(client, case.seller, case.order_id, 1, expect=422)["remaining"] == 0
    # Another order of the same shop has its own budget.
    other = world.order(case.buyer_id, case.shop, unit=5_000, qty=2)
    refund(client, case.seller, other["order_id"], 5_000)


def test_three_requests_of_2000_on_a_5000_budget_the_third_is_refused(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world)
    codes = [refund(client, case.seller, case.order_id, 2_000, expect=e).get("code") for e in (201, 201, 422)]
    assert codes[2] == "refund.over_budget"


def test_the_budget_counts_every_kind_and_the_shops_part_of_a_split(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world)
    # An arbitrator's split refund: its seller share is the shop's money, the rest the operator's.
    refund(client, case.arbitrator, case.order_id, 2_000, funded_by="split", seller_share=money(1_000))
    refund(client, case.agent, case.order_id, 1_000, funded_by="operator")  # operator goodwill: not the shop's
    refund(client, case.seller, case.order_id, 1_500)  # partial
    refund(client, case.seller, case.order_id, 1_500, kind="credit")
    over = refund(client, case.seller, case.order_id, 1_001, expect=422, kind="promo_code")
    assert (over["code"], over["used"]) == ("refund.over_budget", 4_000)
    refund(client, case.seller, case.order_id, 1_000, kind="promo_code")  # exactly the budget
    refund(client, case.seller, case.order_id, 1, expect=422, kind="credit")


def test_a_failed_refund_uses_no_budget(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world)
    first = refund(client, case.seller, case.order_id, 4_000)
    refund(client, case.seller, case.order_id, 4_000, expect=422)
    escrow = FakeEscrow()
    escrow.fail_for[first["refund_id"]] = [PaymentProviderError("card closed", code="card_closed", transient=False)]
    pay(settings, escrow)
    assert client.get(f"/v1/refunds/{first['refund_id']}", headers=case.seller).json()["status"] == "failed"
    assert refund(client, case.seller, case.order_id, 4_000)["status"] == "pending"


def test_a_shops_offer_is_checked_against_what_is_left_of_its_budget(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world)
    refund(client, case.seller, case.order_id, 3_000)
    open_on(case, "l1", 4_000)
    over = case.act(case.seller, "propose", expect=422, resolution=partial(2_500))
    assert (over["code"], over["remaining"]) == ("refund.over_budget", 2_000)
    # A bonus is the operator's money, even on a credit the shop funds.
    bonus = case.act(
        case.seller, "propose", expect=403, resolution={**partial(1_000), "type": "credit", "bonus_percent": 10}
    )
    assert bonus["code"] == "refund.funding_not_allowed"
    assert [e["action"] for e in case.events()] == ["open"]  # refusals change nothing
    case.act(case.seller, "propose", resolution=partial(2_000))
    # The open offer is committed: a direct refund on top of it is refused until the buyer answers.
    assert refund(client, case.seller, case.order_id, 1, expect=422)["used"] == 5_000
    case.act(case.buyer, "reject_offer")
    refund(client, case.seller, case.order_id, 1)
    case.act(case.seller, "propose", resolution=partial(1_999))
    case.act(case.buyer, "accept_offer")
    assert case.dispute["status"] == "resolving"
    refund(client, case.seller, case.order_id, 1, expect=422)


def test_accepting_a_claim_counts_what_the_shop_already_refunded(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world, budget=5_500)
    refund(client, case.seller, case.order_id, 1_000)
    open_on(case, "l1", 5_000)
    over = case.act(case.seller, "accept_claim", expect=422)  # 1 000 + 5 000 > 5 500
    assert (over["code"], over["used"], over["remaining"]) == ("refund.over_budget", 1_000, 4_500)
    assert case.get(case.seller)["status"] == "open"

    other = shop(client, auth, world, budget=5_500)
    refund(client, other.seller, other.order_id, 500)
    open_on(other, "l1", 5_000)
    other.act(other.seller, "accept_claim", return_required=True)  # 500 + 5 000: within the budget
    assert other.dispute["status"] == "awaiting_return"
    # Accepted but not refunded yet (the return comes first): the money is committed all the same.
    refund(client, other.seller, other.order_id, 1, expect=422)
    open_on(other, "l2", 1)
    assert other.act(other.seller, "accept_claim", expect=422)["code"] == "refund.over_budget"


def test_an_agents_goodwill_limit_is_per_order(client: TestClient[Any], auth: Tokens, world: World) -> None:
    case = shop(client, auth, world, total=20_000)  # the agent goodwill limit is 5 000 (the default)
    operator = {"funded_by": "operator"}
    refund(client, case.agent, case.order_id, 3_000, **operator)
    over = refund(client, case.agent, case.order_id, 3_000, expect=422, **operator)
    assert (over["code"], over["limit"], over["used"], over["remaining"]) == (
        "refund.over_goodwill_limit",
        5_000,
        3_000,
        2_000,
    )
    # A bonus is goodwill too: 1 500 + 20 % = 1 800.
    credit = refund(client, case.agent, case.order_id, 1_500, kind="credit", bonus_percent=20, **operator)
    assert credit["bonus"] == money(300)
    refund(client, case.agent, case.order_id, 201, expect=422, **operator)
    # A dispute offer by an agent is goodwill on the same order.
    open_on(case, "l1", 1_000)
    refused = case.act(case.agent, "propose", expect=422, resolution=partial(201, funded_by="operator"))
    assert refused["code"] == "refund.over_goodwill_limit"
    case.act(case.agent, "propose", resolution=partial(200, funded_by="operator"))
    refund(client, case.agent, case.order_id, 1, expect=422, **operator)  # the open offer is committed
    # An agent commits the operator's money, never the shop's (the default funding of a resolution).
    case.act(case.buyer, "reject_offer")
    seller_funded = case.act(case.agent, "propose", expect=403, resolution=partial(100))
    assert seller_funded["code"] == "refund.funding_not_allowed"
    case.act(case.agent, "propose", resolution={"type": "repair"})  # no money: no limit


def test_the_goodwill_limit_counts_all_operator_money_on_the_order(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world)
    refund(client, case.arbitrator, case.order_id, 4_500, funded_by="operator")  # an arbitrator: no limit
    refund(client, case.agent, case.order_id, 501, expect=422, funded_by="operator")
    refund(client, case.agent, case.order_id, 500, funded_by="operator")
    refund(client, case.arbitrator, case.order_id, 3_000, funded_by="operator")  # still no limit


def test_concurrent_requests_cannot_together_pass_the_budget(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = shop(client, auth, world, budget=3_000)
    body = {"order_id": case.order_id, "kind": "partial", "funded_by": "seller", "amount": money(1_000), "reason": "x"}

    def post(_: int) -> Any:
        return client.post("/v1/refunds", json=body, headers={**case.seller, "Idempotency-Key": uuid.uuid4().hex})

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(post, range(6)))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [422] * 3
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"refund.over_budget"}


@pytest.mark.parametrize("round_", range(3))
def test_a_refund_and_an_accepted_claim_at_once_cannot_both_pass(
    client: TestClient[Any], auth: Tokens, world: World, round_: int
) -> None:
    case = shop(client, auth, world)
    open_on(case, "l1", 3_000)
    path = f"/v1/disputes/{case.dispute['dispute_id']}/actions"
    body = {"order_id": case.order_id, "kind": "partial", "funded_by": "seller", "amount": money(3_000), "reason": "x"}

    def accept() -> Any:
        return client.post(path, json={"action": "accept_claim"}, headers=case.seller)

    def direct() -> Any:
        return client.post("/v1/refunds", json=body, headers={**case.seller, "Idempotency-Key": uuid.uuid4().hex})

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = [f.result() for f in [pool.submit(accept), pool.submit(direct)]]
    assert sorted(r.status_code for r in answers) in ([200, 422], [201, 422])
    assert [r.json()["code"] for r in answers if r.status_code == 422] == ["refund.over_budget"]
    listed = client.get("/v1/refunds", params={"order_id": case.order_id}, headers=case.seller).json()["items"]
    assert sum(r["seller_share"]["amount"] for r in listed) <= 5_000


def pay(settings: Settings, escrow: FakeEscrow) -> int:
    """One worker pass (the database is shared: other tests' dispute refunds move their disputes on)."""

    async def run() -> int:
        engine = create_engine(settings.database_url)

        async def on_settled(session: Any, refund: Any, now: Any) -> None:
            await refund_settled(session, refund, now, settings)

        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            return await settlement.pay_due(sessions, gateway=escrow, on_settled=on_settled)
        finally:
            await engine.dispose()

    return asyncio.run(run())
