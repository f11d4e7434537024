"""Escrow released to shops (SPEC §8.1): the release rules, one transfer whatever happens, the ledger, and
who sees payouts and balances — through a fake provider with Stripe's idempotency, on SQLite and
PostgreSQL.

The tests share one database: their orders are delivered in 2001 and the release passes run "in 2001",
so a pass only ever sees this module's orders (every other test's orders are delivered later or never).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth import Actor, Role
from app.db import create_engine
from app.events import service as events
from app.events.models import Event
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.orders.models import Order
from app.payouts import release
from app.payouts.gateway import PaymentProviderError
from app.settings import Settings
from tests.factories import (
    Case,
    Tokens,
    World,
    deactivate_all,
    grant,
    ledger_is_balanced,
    money,
    pay,
    subscribe,
    uid,
)
from tests.fakes import FakeEscrow

DELIVERED = datetime(2001, 1, 1, 12, 0, tzinfo=UTC)
HOLD = 14 * 24 * 3600
DUE = DELIVERED + timedelta(seconds=HOLD + 1)


def run_release(settings: Settings, escrow: FakeEscrow, *, now: datetime = DUE, passes: int = 1) -> list[int]:
    """``passes`` release passes at once, each with its own connection (two workers)."""

    async def run() -> list[int]:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            return list(
                await asyncio.gather(
                    *(release.release_due(sessions, gateway=escrow, hold_seconds=HOLD, now=now) for _ in range(passes))
                )
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def ledger(settings: Settings, order_id: str) -> dict[str, tuple[str | None, dict[str, int]]]:
    """The order's release transactions: kind -> (provider id, account -> amount)."""

    async def run() -> dict[str, tuple[str | None, dict[str, int]]]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(
                        LedgerTransaction.kind, LedgerTransaction.provider_id, LedgerEntry.account, LedgerEntry.amount
                    )
                    .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                    .where(
                        LedgerTransaction.order_id == order_id,
                        LedgerTransaction.kind.in_(["release", "transfer_paid", "release_reversed", "debt_recorded"]),
                    )
                )
                found: dict[str, tuple[str | None, dict[str, int]]] = {}
                for kind, provider_id, account, amount in rows.all():
                    found.setdefault(kind, (provider_id, {}))[1][account] = amount
                return found
        finally:
            await engine.dispose()

    return asyncio.run(run())


def payouts_of(client: TestClient[Any], who: dict[str, str], **query: str) -> list[dict[str, Any]]:
    response = client.get("/v1/payouts", params=query, headers=who)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def payout_of(client: TestClient[Any], order_id: str, finance: dict[str, str]) -> dict[str, Any] | None:
    items = payouts_of(client, finance, order_id=order_id)
    return items[0] if items else None


@pytest.fixture
def finance(auth: Tokens) -> dict[str, str]:
    return auth("finance", uid("fin"))


def delivered_case(client: TestClient[Any], auth: Tokens, world: World, *, account: bool = True) -> Case:
    """An order of 5 000 (commission 500) delivered in 2001, its shop with a connected account or not."""
    case = Case(client, auth, world, refund_budget=money(5_000))
    if account:
        set_account(client, auth, case.shop)
    body = client.get(f"/v1/orders/{case.order_id}", headers=auth.marketplace).json()
    pushed = {
        "buyer_id": case.buyer_id,
        "seller_id": case.shop,
        "currency": "EUR",
        "total": money(5_000),
        "commission": money(500),
        "lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": 2, "unit_price": money(2_500)}],
        "payment": {"provider": "stripe", "charge_id": body["payment"]["charge_id"]},
        "delivered_at": DELIVERED.isoformat().replace("+00:00", "Z"),
    }
    response = client.put(f"/v1/orders/{case.order_id}", json=pushed, headers=auth.marketplace)
    assert response.status_code == 200, response.text
    return case


def set_account(client: TestClient[Any], auth: Tokens, shop: str) -> None:
    response = client.put(
        f"/v1/sellers/{shop}",
        json={"name": f"Shop {shop}", "stripe_account_id": f"acct_{uuid.uuid4().hex[:12]}"},
        headers=auth.marketplace,
    )
    assert response.status_code in (200, 201), response.text


def escrow_status(client: TestClient[Any], case: Case) -> str:
    return client.get(f"/v1/orders/{case.order_id}", headers=case.agent).json()["escrow"]["status"]  # type: ignore[no-any-return]


def test_an_order_is_released_once_its_hold_has_passed(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world)
    escrow = FakeEscrow()
    run_release(settings, escrow, now=DUE - timedelta(days=1))
    assert payout_of(client, case.order_id, finance) is None
    assert escrow_status(client, case) == "held"

    run_release(settings, escrow)
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["status"] == "paid"
    assert payout["amount"] == money(4_500)  # captured less the commission
    assert payout["provider_ref"].startswith("tr_")
    assert escrow_status(client, case) == "released"
    sent = next(t for t in escrow.transfers.values() if t.transfer_group == case.order_id)
    assert sent.amount == 4_500
    books = ledger(settings, case.order_id)
    assert books["release"][1] == {"escrow": 5_000, "platform_commission": -500, "transfers_in_flight": -4_500}
    assert books["transfer_paid"][0] == payout["provider_ref"]
    assert ledger_is_balanced(settings)

    run_release(settings, escrow)  # already released: nothing more
    assert len([t for t in escrow.transfers.values() if t.transfer_group == case.order_id]) == 1


def test_an_open_dispute_or_a_pending_refund_holds_the_release(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    disputed = delivered_case(client, auth, world)
    disputed.open()
    refunded = delivered_case(client, auth, world)
    grant(
        client, refunded.arbitrator, order_id=refunded.order_id, kind="partial", amount=money(1_000), funded_by="seller"
    )
    run_release(settings, FakeEscrow())
    assert payout_of(client, disputed.order_id, finance) is None
    assert escrow_status(client, disputed) == "frozen"
    assert payout_of(client, refunded.order_id, finance) is None


def test_the_share_is_net_of_seller_funded_compensation_and_commission(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world)
    grant(client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(1_000), funded_by="seller")
    grant(client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(700), funded_by="operator")
    run_release(settings, FakeEscrow())
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["amount"] == money(5_000 - 500 - 1_000)  # the operator's goodwill is not the shop's


def test_a_share_the_charge_no_longer_holds_is_paid_from_the_platforms_balance(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    plain = delivered_case(client, auth, world)
    emptied = delivered_case(client, auth, world)
    # The operator's goodwill refunded 3 000 of the 5 000 charge: the shop's 4 500 no longer fits in it.
    grant(
        client, emptied.arbitrator, order_id=emptied.order_id, kind="partial", amount=money(3_000), funded_by="operator"
    )
    escrow = FakeEscrow()
    pay(settings, escrow)
    run_release(settings, escrow)
    for case in (plain, emptied):
        payout = payout_of(client, case.order_id, finance)
        assert payout is not None
        assert payout["status"] == "paid", payout
        assert payout["amount"] == money(4_500)
    charge = client.get(f"/v1/orders/{plain.order_id}", headers=auth.marketplace).json()["payment"]["charge_id"]
    assert escrow.transfer_sources[plain.order_id] == charge  # tied to the buyer's charge
    assert escrow.transfer_sources[emptied.order_id] is None  # Stripe would refuse it with the charge


def test_a_shops_debt_is_recorded_then_netted_from_its_next_release(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    first = delivered_case(client, auth, world)
    # The shop refunds the whole order: its share is -500 (the commission), a debt.
    grant(client, first.arbitrator, order_id=first.order_id, kind="credit", amount=money(5_000), funded_by="seller")
    run_release(settings, FakeEscrow())
    payout = payout_of(client, first.order_id, finance)
    assert payout is not None
    assert (payout["status"], payout["amount"], payout["provider_ref"]) == ("paid", money(0), None)
    assert ledger(settings, first.order_id)["debt_recorded"][1]["seller_debt"] == 500
    # The same shop's next order pays the debt back first.
    again = delivered_case_for_shop(client, auth, first)
    escrow = FakeEscrow()
    run_release(settings, escrow)
    netted = payout_of(client, again, finance)
    assert netted is not None
    assert (netted["amount"], netted["debt_netted"]) == (money(4_000), money(500))
    assert ledger_is_balanced(settings)


def test_a_debt_is_netted_once_when_two_orders_of_the_shop_are_released_in_the_same_pass(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    first = delivered_case(client, auth, world)
    grant(client, first.arbitrator, order_id=first.order_id, kind="credit", amount=money(5_000), funded_by="seller")
    run_release(settings, FakeEscrow())  # a debt of 500
    orders = [delivered_case_for_shop(client, auth, first) for _ in range(2)]
    run_release(settings, FakeEscrow())  # both in one pass: the debts read once, followed as each nets
    payouts = [payout_of(client, order_id, finance) for order_id in orders]
    assert sorted((p or {})["debt_netted"]["amount"] for p in payouts) == [0, 500]
    assert sorted((p or {})["amount"]["amount"] for p in payouts) == [4_000, 4_500]
    assert ledger_is_balanced(settings)


def delivered_case_for_shop(client: TestClient[Any], auth: Tokens, case: Case, *, delivered: bool = True) -> str:
    """Another order of ``case``'s shop (5 000, commission 500), delivered in 2001 or not delivered."""
    order_id = uid("ord")
    body = {
        "buyer_id": uid("buyer"),
        "seller_id": case.shop,
        "currency": "EUR",
        "total": money(5_000),
        "commission": money(500),
        "lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": 2, "unit_price": money(2_500)}],
        "payment": {"provider": "stripe", "charge_id": f"ch_{uuid.uuid4().hex[:12]}"},
    }
    if delivered:
        body["delivered_at"] = (DELIVERED - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    response = client.put(f"/v1/orders/{order_id}", json=body, headers=auth.marketplace)
    assert response.status_code == 201, response.text
    return order_id


def test_a_shop_without_an_account_is_blocked_then_released_once_it_is_set(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world, account=False)
    escrow = FakeEscrow()
    run_release(settings, escrow)
    blocked = payout_of(client, case.order_id, finance)
    assert blocked is not None
    assert blocked["status"] == "blocked"
    assert "stripe_account_id" in blocked["failure_reason"]
    assert escrow_status(client, case) == "held"
    assert case.order_id not in {t.transfer_group for t in escrow.transfers.values()}
    run_release(settings, escrow)  # still no account: still blocked, nothing sent
    assert case.order_id not in {t.transfer_group for t in escrow.transfers.values()}

    set_account(client, auth, case.shop)
    run_release(settings, escrow)
    paid = payout_of(client, case.order_id, finance)
    assert paid is not None
    assert (paid["payout_id"], paid["status"], paid["amount"]) == (blocked["payout_id"], "paid", money(4_500))


def test_two_workers_at_once_transfer_once(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    cases = [delivered_case(client, auth, world) for _ in range(3)]
    escrow = FakeEscrow()
    run_release(settings, escrow, passes=2)
    run_release(settings, escrow, passes=2)
    for case in cases:
        payout = payout_of(client, case.order_id, finance)
        assert payout is not None
        assert payout["status"] == "paid"
        key = release.transfer_key(payout["payout_id"])
        assert escrow.transfer_calls.count(key) == 1
        assert len([t for t in escrow.transfers.values() if t.transfer_group == case.order_id]) == 1


def test_a_provider_error_is_retried_with_the_same_key_and_a_refusal_undoes_the_release(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    retried = delivered_case(client, auth, world)
    refused = delivered_case(client, auth, world)
    escrow = FakeEscrow()
    escrow.fail_transfers_of = {
        retried.order_id: [PaymentProviderError("Stripe 500 req_platform_1", code="api_error", transient=True)],
        refused.order_id: [
            PaymentProviderError("platform acct_op is restricted", code="account_invalid", transient=False)
        ],
    }
    run_release(settings, escrow)
    pending = payout_of(client, retried.order_id, finance)
    assert pending is not None
    assert pending["status"] == "pending"
    assert pending["failure_reason"] == "retrying: the payment provider answered api_error"
    failed = payout_of(client, refused.order_id, finance)
    assert failed is not None
    assert failed["status"] == "failed"
    # The shop reads the provider's code, never its text about the marketplace's own platform account.
    shop_view = payout_of(client, refused.order_id, refused.seller)
    assert shop_view is not None
    assert shop_view["failure_reason"].startswith("account_invalid: ")
    assert "acct_op" not in shop_view["failure_reason"]
    assert escrow_status(client, refused) == "held"
    assert "release_reversed" in ledger(settings, refused.order_id)

    run_release(settings, escrow, now=DUE + timedelta(hours=1))
    paid = payout_of(client, retried.order_id, finance)
    assert paid is not None
    assert paid["status"] == "paid"
    key = release.transfer_key(paid["payout_id"])
    assert escrow.transfer_calls.count(key) == 2  # the same key both times
    assert ledger_is_balanced(settings)


def test_a_shop_sees_only_its_own_payouts_and_balance_and_buyers_none(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world)
    other = delivered_case(client, auth, world)
    run_release(settings, FakeEscrow())
    mine = payout_of(client, case.order_id, finance)
    theirs = payout_of(client, other.order_id, finance)
    assert mine is not None
    assert theirs is not None

    # Whatever seller_id says, a shop lists its own shop's payouts only.
    listed = payouts_of(client, case.seller, seller_id=other.shop)
    assert listed == []
    assert [p["payout_id"] for p in payouts_of(client, case.seller)] == [mine["payout_id"]]
    assert client.get(f"/v1/payouts/{mine['payout_id']}", headers=case.seller).json() == mine
    assert client.get(f"/v1/payouts/{theirs['payout_id']}", headers=case.seller).status_code == 404
    assert client.get(f"/v1/sellers/{other.shop}/balance", headers=case.seller).status_code == 404
    # Buyers never see payouts; operator agents neither (finance and admins do).
    for who in (case.buyer, case.agent):
        assert client.get("/v1/payouts", headers=who).status_code == 403
        assert client.get(f"/v1/payouts/{mine['payout_id']}", headers=who).status_code == 403
        assert client.get(f"/v1/sellers/{case.shop}/balance", headers=who).status_code == 403
    assert client.get(f"/v1/payouts/{mine['payout_id']}", headers=auth("admin")).status_code == 200
    assert client.get("/v1/payouts/po_nope", headers=finance).status_code == 404


def test_a_balance_shows_held_frozen_paid_out_and_debt_from_the_ledger(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world)
    run_release(settings, FakeEscrow())
    delivered_case_for_shop(client, auth, case, delivered=False)
    delivered_case_for_shop(client, auth, case, delivered=False)
    body = client.get(f"/v1/sellers/{case.shop}/balance", headers=case.seller)
    assert body.status_code == 200, body.text
    (eur,) = body.json()["balances"]
    assert eur["currency"] == "EUR"
    assert eur["paid_out"] == money(4_500)
    assert eur["held"] == money(2 * 4_500)  # two orders not delivered yet, their shares
    assert (eur["frozen"], eur["reversed"], eur["debt"]) == (money(0), money(0), money(0))
    assert client.get(f"/v1/sellers/{case.shop}/balance", headers=finance).json() == body.json()


def test_an_order_under_dispute_counts_as_frozen_in_the_balance(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    case = delivered_case(client, auth, world)
    case.open()
    (eur,) = client.get(f"/v1/sellers/{case.shop}/balance", headers=case.seller).json()["balances"]
    assert (eur["held"], eur["frozen"], eur["paid_out"]) == (money(0), money(4_500), money(0))


def test_payout_updates_reach_the_shop_and_finance_only(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    case = delivered_case(client, auth, world)
    run_release(settings, FakeEscrow())

    async def seen_by(actor: Actor) -> list[str]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Event.type, Event.payload).where(
                        Event.type == "payout.updated", events.visible_events(actor, actor.key)
                    )
                )
                return [json.loads(payload)["status"] for _, payload in rows.all() if case.order_id in payload]
        finally:
            await engine.dispose()

    assert asyncio.run(seen_by(Actor(id="m", role=Role.SELLER, seller_id=case.shop))) == ["pending", "paid"]
    assert asyncio.run(seen_by(Actor(id="f", role=Role.FINANCE))) == ["pending", "paid"]
    assert asyncio.run(seen_by(Actor(id="m", role=Role.SELLER, seller_id=uid("shop")))) == []
    assert asyncio.run(seen_by(Actor(id=case.buyer_id, role=Role.BUYER))) == []


def test_payout_outcomes_are_announced_to_the_marketplace(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    admin = auth("admin")
    endpoint = subscribe(client, admin, "https://127.0.0.1:9/hooks", ["payout.paid", "payout.failed"])
    try:
        paid = delivered_case(client, auth, world)
        refused = delivered_case(client, auth, world)
        escrow = FakeEscrow()
        escrow.fail_transfers_of = {refused.order_id: [PaymentProviderError("no", code="x", transient=False)]}
        run_release(settings, escrow)
        log = client.get(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", params={"limit": 200}, headers=admin
        ).json()["items"]
        sent = {json.loads(d["payload"])["data"]["order_id"]: d["event_type"] for d in log}
        assert sent[paid.order_id] == "payout.paid"
        assert sent[refused.order_id] == "payout.failed"
    finally:
        deactivate_all(client, admin)


def test_a_worker_lost_after_the_transfer_is_replayed_with_the_same_key(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    """The worker transfers, then dies before recording: the lease runs out, the next pass asks again with
    the same key and Stripe answers with the first transfer."""
    case = delivered_case(client, auth, world)
    escrow = FakeEscrow()

    async def transfer_then_die() -> None:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            async with sessions() as session, session.begin():
                await release.open_payouts(session, now=DUE, hold=timedelta(seconds=HOLD))
            for item in await release.claim_due(sessions, now=DUE):
                await release.ask_provider(escrow, item)  # sent; never recorded
        finally:
            await engine.dispose()

    asyncio.run(transfer_then_die())
    pending = payout_of(client, case.order_id, finance)
    assert pending is not None
    assert pending["status"] == "pending"
    run_release(settings, escrow, now=DUE + timedelta(seconds=30))  # the lease holds: nothing
    run_release(settings, escrow, now=DUE + release.LEASE + timedelta(seconds=1))
    paid = payout_of(client, case.order_id, finance)
    assert paid is not None
    assert paid["status"] == "paid"
    key = release.transfer_key(paid["payout_id"])
    assert escrow.transfer_calls.count(key) == 2
    assert paid["provider_ref"] == escrow.transfers[key].id  # one transfer, recorded from its first answer


def test_a_payout_blocked_for_days_still_retries_a_provider_error_once_released(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    case = delivered_case(client, auth, world, account=False)
    escrow = FakeEscrow()
    run_release(settings, escrow)
    set_account(client, auth, case.shop)
    escrow.fail_transfers_of = {case.order_id: [PaymentProviderError("Stripe 500", code="api_error", transient=True)]}
    later = DUE + timedelta(days=3)
    run_release(settings, escrow, now=later)
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["status"] == "pending"  # not given up: the key's 24 h count from the release
    run_release(settings, escrow, now=later + timedelta(hours=1))
    assert (payout_of(client, case.order_id, finance) or {})["status"] == "paid"


def test_the_release_scan_reads_only_orders_still_held(settings: Settings) -> None:
    """The due-orders query uses the partial index on held, delivered orders (SQLite's plan; PostgreSQL
    picks by statistics), so already released orders cost the scan nothing."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the planner's choice on PostgreSQL depends on table statistics")

    async def plan() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                query = release.due_orders(now=DUE, hold=timedelta(seconds=HOLD)).order_by(Order.delivered_at)
                compiled = query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
                return " ".join(str(row[-1]) for row in rows.all())
        finally:
            await engine.dispose()

    assert "ix_orders_release_due" in asyncio.run(plan())


def test_a_released_orders_money_cannot_change(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    case = delivered_case(client, auth, world)
    run_release(settings, FakeEscrow())
    body = client.get(f"/v1/orders/{case.order_id}", headers=auth.marketplace).json()
    pushed = {
        "buyer_id": case.buyer_id,
        "seller_id": case.shop,
        "currency": "EUR",
        "total": money(5_000),
        "commission": money(100),
        "lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": 2, "unit_price": money(2_500)}],
        "payment": {"provider": "stripe", "charge_id": body["payment"]["charge_id"]},
        "delivered_at": body["delivered_at"],
    }
    response = client.put(f"/v1/orders/{case.order_id}", json=pushed, headers=auth.marketplace)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "order.immutable"
