"""Refunds from escrow: role rules, caps under concurrency, idempotency, the ledger, and payment by the
worker through the escrow port (a fake provider with Stripe's idempotency) — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine, utcnow
from app.payouts import settlement
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
    order_money,
    pay,
    subscribe,
    uid,
)
from tests.fakes import FakeEscrow


@pytest.fixture
def case(client: TestClient[Any], auth: Tokens, world: World) -> Case:
    return Case(client, auth, world, refund_budget=money(2_000))


def test_role_rules(client: TestClient[Any], auth: Tokens, case: Case) -> None:
    order = case.order_id
    partial = {"order_id": order, "kind": "partial", "amount": money(1_000)}
    for who in (case.buyer, case.finance, auth.marketplace):
        grant(client, who, 403, **partial, funded_by="operator")
    # Agents: operator goodwill only, up to the limit (5 000 by default).
    assert grant(client, case.agent, 403, **partial, funded_by="seller")["code"] == "refund.funding_not_allowed"
    limit = grant(client, case.agent, 422, order_id=order, kind="partial", amount=money(5_001), funded_by="operator")
    assert limit["code"] in ("refund.over_goodwill_limit", "refund.exceeds_refundable")
    assert grant(client, case.agent, **partial, funded_by="operator")["status"] == "pending"
    # Shops: their own orders, seller-funded, within budget (2 000 here).
    assert grant(client, case.seller, 403, **partial, funded_by="operator")["code"] == "refund.funding_not_allowed"
    grant(client, case.other_shop, 404, **partial, funded_by="seller")
    over = grant(client, case.seller, 422, order_id=order, kind="partial", amount=money(2_500), funded_by="seller")
    assert over["code"] == "refund.over_budget"
    assert grant(client, case.seller, **partial, funded_by="seller")["funded_by"] == "seller"
    # Arbitrators: anything, any funding.
    rest = grant(client, case.arbitrator, order_id=order, kind="full", funded_by="split", seller_share=money(1_000))
    assert (rest["amount"], rest["seller_share"]) == (money(3_000), money(1_000))
    assert order_money(client, case) == (5_000, 0)
    nothing = grant(client, case.arbitrator, 422, order_id=order, kind="full", funded_by="operator")
    assert nothing["code"] == "refund.exceeds_refundable"


def test_bad_input_changes_nothing(client: TestClient[Any], case: Case) -> None:
    order = case.order_id
    missing_key = client.post(
        "/v1/refunds",
        json={"order_id": order, "kind": "full", "funded_by": "operator", "reason": "x"},
        headers=case.arbitrator,
    )
    assert missing_key.status_code == 400
    too_much = grant(
        client, case.arbitrator, 422, order_id=order, kind="partial", amount=money(5_001), funded_by="operator"
    )
    assert too_much["code"] == "refund.exceeds_refundable"
    usd = grant(
        client, case.arbitrator, 422, order_id=order, kind="partial", amount=money(100, "USD"), funded_by="seller"
    )
    assert usd["code"] == "money.currency_mismatch"
    assert grant(client, case.arbitrator, 400, order_id=order, kind="partial", funded_by="seller")["code"] == (
        "validation_error"
    )
    split = grant(client, case.arbitrator, 400, order_id=order, kind="partial", amount=money(100), funded_by="split")
    assert split["errors"][0]["field"] == "seller_share"
    assert order_money(client, case) == (0, 5_000)
    assert client.get("/v1/refunds", params={"order_id": order}, headers=case.agent).json()["items"] == []


def test_idempotent_replay_and_key_reuse(client: TestClient[Any], case: Case) -> None:
    body = {"order_id": case.order_id, "kind": "partial", "amount": money(700), "funded_by": "operator"}
    first = grant(client, case.arbitrator, key="k-1", **body)
    again = grant(client, case.arbitrator, key="k-1", **body)
    assert again["refund_id"] == first["refund_id"]
    reused = grant(client, case.arbitrator, 422, key="k-1", **{**body, "amount": money(800)})
    assert reused["code"] == "idempotency.key_reused"
    assert order_money(client, case) == (700, 4_300)


def test_concurrent_partial_refunds_never_exceed_the_capture(client: TestClient[Any], case: Case) -> None:
    body = {"order_id": case.order_id, "kind": "partial", "amount": money(1_500), "funded_by": "operator"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(
                lambda _: client.post(
                    "/v1/refunds",
                    json={**body, "reason": "x"},
                    headers={**case.arbitrator, "Idempotency-Key": uuid.uuid4().hex},
                ),
                range(10),
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 3 + [422] * 7  # three refunds of 1 500 fit in 5 000
    assert order_money(client, case) == (4_500, 500)


def test_the_worker_pays_once_and_the_ledger_follows(client: TestClient[Any], settings: Settings, case: Case) -> None:
    escrow = FakeEscrow()
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_200), funded_by="seller"
    )
    escrow.fail_for[refund["refund_id"]] = [PaymentProviderError("timeout", code=None, transient=True)]
    assert pay(settings, escrow) >= 1
    after_timeout = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert after_timeout["status"] == "pending"
    assert pay(settings, escrow) == 0  # backing off
    assert pay(settings, escrow, later=timedelta(minutes=2)) >= 1
    paid = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert (paid["status"], paid["provider_ref"]) == ("succeeded", escrow.refunds[refund["refund_id"]].id)
    assert escrow.calls.count(refund["refund_id"]) == 2  # the same idempotency key both times
    assert pay(settings, escrow, later=timedelta(hours=1)) == 0  # nothing left to pay
    assert order_money(client, case) == (1_200, 3_800)
    assert ledger_is_balanced(settings)
    seen_by_buyer = client.get("/v1/refunds", params={"order_id": case.order_id}, headers=case.buyer).json()
    assert [r["refund_id"] for r in seen_by_buyer["items"]] == [refund["refund_id"]]
    assert client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.stranger).status_code == 404


def test_a_refused_refund_is_reversed(client: TestClient[Any], settings: Settings, case: Case) -> None:
    escrow = FakeEscrow()
    refund = grant(client, case.arbitrator, order_id=case.order_id, kind="full", funded_by="operator")
    escrow.fail_for[refund["refund_id"]] = [
        PaymentProviderError("This charge has already been refunded.", code="charge_already_refunded", transient=False)
    ]
    pay(settings, escrow)
    failed = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert failed["status"] == "failed"
    assert failed["failure_reason"].startswith("charge_already_refunded")
    assert order_money(client, case) == (0, 5_000)  # the ledger entries are reversed
    assert ledger_is_balanced(settings)


def test_a_dispute_refund_resolves_the_dispute_or_flags_it(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    escrow = FakeEscrow()
    paid = Case(client, auth, world, refund_budget=money(2_000))
    paid.open()
    paid.act(paid.seller, "propose", resolution={"type": "refund_partial", "amount": money(1_500)})
    paid.act(paid.buyer, "accept_offer")
    assert paid.dispute["status"] == "resolving"
    [pending] = client.get("/v1/refunds", params={"order_id": paid.order_id}, headers=paid.agent).json()["items"]
    assert (pending["dispute_id"], pending["amount"], pending["funded_by"]) == (
        paid.dispute["dispute_id"],
        money(1_500),
        "seller",
    )
    pay(settings, escrow)
    assert paid.get(paid.agent)["status"] == "resolved"
    assert paid.events()[-1]["action"] == "refund_succeeded"

    refused = Case(client, auth, world)
    refused.open()
    refused.act(refused.buyer, "escalate", note="help")
    refused.act(refused.arbitrator, "claim")
    refused.act(
        refused.arbitrator,
        "decide",
        resolution={"type": "refund_full", "funded_by": "operator", "at_fault": "carrier"},
        rationale="lost parcel",
    )
    assert refused.dispute["status"] == "resolving"
    [owed] = client.get("/v1/refunds", params={"order_id": refused.order_id}, headers=refused.agent).json()["items"]
    escrow.fail_for[owed["refund_id"]] = [
        PaymentProviderError("card expired", code="expired_or_canceled_card", transient=False)
    ]
    pay(settings, escrow)
    back = refused.get(refused.agent)
    assert (back["status"], back["refund_failed"]) == ("escalated", True)
    queue = client.get("/v1/queue", params={"seller_id": refused.shop}, headers=refused.agent).json()["items"]
    assert [d["refund_failed"] for d in queue] == [True]
    assert order_money(client, refused) == (0, 5_000)


def test_two_workers_pay_each_refund_once(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    escrow = FakeEscrow()
    cases = [Case(client, auth, world) for _ in range(4)]
    granted = [grant(client, c.arbitrator, order_id=c.order_id, kind="full", funded_by="operator") for c in cases]

    async def two() -> None:
        engines = [create_engine(settings.database_url) for _ in range(2)]
        try:
            makers = [async_sessionmaker(e, expire_on_commit=False) for e in engines]
            await asyncio.gather(*(settlement.pay_due(m, gateway=escrow) for m in makers))
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(two())
    ids = {g["refund_id"] for g in granted}
    assert {k for k in escrow.calls if k in ids} == ids
    assert all(escrow.calls.count(i) == 1 for i in ids)


def test_credit_notes_are_numbered_without_gaps_and_spent_once_per_order(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    cases = [Case(client, auth, world) for _ in range(6)]
    bodies = [
        # every other one asks for more than the order holds: refused, and must not burn a number
        {"order_id": c.order_id, "kind": "credit", "amount": money(9_000 if i % 2 else 1_000), "funded_by": "operator"}
        for i, c in enumerate(cases)
    ]
    arbitrator = cases[0].arbitrator
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(
                lambda b: client.post(
                    "/v1/refunds",
                    json={**b, "reason": "x"},
                    headers={**arbitrator, "Idempotency-Key": uuid.uuid4().hex},
                ),
                bodies,
            )
        )
    assert sorted(r.status_code for r in responses) == [201] * 3 + [422] * 3
    numbers = sorted(r.json()["credit_note_number"] for r in responses if r.status_code == 201)
    year, sequence = numbers[0][3:7], [int(n[-6:]) for n in numbers]
    assert all(n.startswith(f"CN-{year}-") for n in numbers)
    assert sequence == list(range(sequence[0], sequence[0] + 3))  # consecutive: no gap, no duplicate

    case = Case(client, auth, world)
    note = grant(
        client,
        case.arbitrator,
        order_id=case.order_id,
        kind="credit",
        amount=money(2_000),
        funded_by="seller",
        bonus_percent=10,
    )
    assert (note["status"], note["bonus"]) == ("succeeded", money(200))
    assert order_money(client, case) == (2_000, 3_000)  # the bonus is not the buyer's money coming back
    wallet = client.get(f"/v1/buyers/{case.buyer_id}/credit", headers=case.buyer).json()
    assert wallet["balance"] == money(2_200)
    assert [n["number"] for n in wallet["credit_notes"]] == [note["credit_note_number"]]
    assert client.get(f"/v1/buyers/{case.buyer_id}/credit", headers=case.stranger).status_code == 404

    path = f"/v1/buyers/{case.buyer_id}/credit/redemptions"
    spend = {"order_id": uid("next-order"), "amount": money(1_500)}
    assert client.post(path, json=spend, headers=case.buyer).status_code == 403
    first = client.post(path, json=spend, headers=auth.marketplace)
    assert (first.status_code, first.json()["balance"]) == (201, money(700))
    again = client.post(path, json=spend, headers=auth.marketplace)
    assert (again.status_code, again.json()["redemption_id"]) == (200, first.json()["redemption_id"])
    short = client.post(path, json={"order_id": uid("o"), "amount": money(800)}, headers=auth.marketplace)
    assert (short.status_code, short.json()["code"]) == (422, "credit.insufficient")
    assert client.get(f"/v1/buyers/{case.buyer_id}/credit", headers=auth.marketplace).json()["balance"] == money(700)


def test_promo_codes_reach_the_buyer_and_are_single_use(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    case = Case(client, auth, world)
    case.open()
    case.act(case.buyer, "escalate", note="help")
    case.act(case.arbitrator, "claim")
    case.act(
        case.arbitrator,
        "decide",
        resolution={
            "type": "promo_code",
            "amount": money(1_000),
            "funded_by": "operator",
            "bonus_percent": 20,
            "at_fault": "carrier",
        },
        rationale="late parcel",
    )
    assert case.dispute["status"] == "resolved"  # issued at once: nothing to wait for
    assert [e["action"] for e in case.events()][-2:] == ["decide", "refund_succeeded"]
    [promo] = client.get("/v1/refunds", params={"order_id": case.order_id}, headers=case.buyer).json()["items"]
    code = promo["promo_code"]
    assert len(code) >= 10
    assert set(code) <= set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")
    shop_view = client.get("/v1/refunds", params={"order_id": case.order_id}, headers=case.seller).json()["items"]
    assert shop_view[0]["promo_code"] is None
    # Posted to the buyer alone, by the service itself (the shop reads the dispute's shared thread).
    mine = client.get("/v1/threads", params={"dispute_id": case.dispute["dispute_id"]}, headers=case.buyer).json()
    [private] = [t["thread_id"] for t in mine["items"] if t["audience"] == "operator_buyer"]
    [notice] = client.get(f"/v1/threads/{private}/messages", headers=case.buyer).json()["items"]
    assert code in notice["body"]
    assert notice["author"] == {"id": "system", "role": "system", "name": "Marketplace after-sales"}

    path = f"/v1/promo-codes/{code}/redemptions"
    order = uid("next-order")
    assert client.post(path, json={"buyer_id": case.buyer_id, "order_id": order}, headers=case.buyer).status_code == 403
    wrong = client.post(path, json={"buyer_id": "someone-else", "order_id": order}, headers=auth.marketplace)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "promo.wrong_buyer")
    used = client.post(path, json={"buyer_id": case.buyer_id, "order_id": order}, headers=auth.marketplace)
    assert (used.status_code, used.json()["value"]) == (201, money(1_200))
    replay = client.post(path, json={"buyer_id": case.buyer_id, "order_id": order}, headers=auth.marketplace)
    assert replay.status_code == 200
    twice = client.post(path, json={"buyer_id": case.buyer_id, "order_id": uid("o")}, headers=auth.marketplace)
    assert (twice.status_code, twice.json()["code"]) == (409, "promo.already_redeemed")
    unknown = client.post(
        "/v1/promo-codes/NOPE2345NOPE/redemptions", json={"buyer_id": "b", "order_id": "o"}, headers=auth.marketplace
    )
    assert unknown.status_code == 404

    later = Case(client, auth, world)
    expired = grant(
        client, later.arbitrator, order_id=later.order_id, kind="promo_code", amount=money(500), funded_by="operator"
    )

    async def expire() -> None:
        from sqlalchemy import update

        from app.payouts.models import PromoCode

        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(PromoCode)
                    .where(PromoCode.code == expired["promo_code"])
                    .values(expires_at=utcnow() - timedelta(days=1))
                )
        finally:
            await engine.dispose()

    asyncio.run(expire())
    late = client.post(
        f"/v1/promo-codes/{expired['promo_code']}/redemptions",
        json={"buyer_id": later.buyer_id, "order_id": uid("o")},
        headers=auth.marketplace,
    )
    assert (late.status_code, late.json()["code"]) == (422, "promo.expired")
    assert ledger_is_balanced(settings)


def test_refund_outcomes_are_announced_to_the_marketplace(
    client: TestClient[Any], settings: Settings, auth: Tokens, case: Case
) -> None:
    admin = auth("admin", uid("admin"))
    deactivate_all(client, admin)
    endpoint = subscribe(client, admin, "http://127.0.0.1:9/hooks", ["refund.succeeded", "refund.failed"])
    try:
        escrow = FakeEscrow()
        paid = grant(
            client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="operator"
        )
        refused = grant(
            client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(500), funded_by="operator"
        )
        escrow.fail_for[refused["refund_id"]] = [
            PaymentProviderError("card expired", code="expired_or_canceled_card", transient=False)
        ]
        credited = grant(
            client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(300), funded_by="operator"
        )
        pay(settings, escrow)
        pay(settings, escrow)  # a second pass announces nothing more
        listed = client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=admin).json()
        sent = {json.loads(d["payload"])["data"]["refund_id"]: json.loads(d["payload"]) for d in listed["items"]}
        assert len(listed["items"]) == 3
        assert {k: v["type"] for k, v in sent.items()} == {
            paid["refund_id"]: "refund.succeeded",
            refused["refund_id"]: "refund.failed",
            credited["refund_id"]: "refund.succeeded",
        }
        assert sent[paid["refund_id"]]["data"]["amount"] == money(1_000)
        assert sent[paid["refund_id"]]["data"]["provider_ref"] == escrow.refunds[paid["refund_id"]].id
        assert sent[refused["refund_id"]]["data"]["failure_reason"].startswith("expired_or_canceled_card")
        assert sent[credited["refund_id"]]["data"]["kind"] == "credit"
    finally:
        deactivate_all(client, admin)


def test_a_refund_that_cannot_be_recorded_does_not_hold_back_the_others(
    client: TestClient[Any], settings: Settings, case: Case
) -> None:
    escrow = FakeEscrow()
    stuck = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="operator"
    )
    fine = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(500), funded_by="operator"
    )

    async def run(later: timedelta, poisoned: str | None) -> None:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)

            async def on_settled(session: Any, refund: Any, now: Any) -> None:
                if refund.id == poisoned:
                    raise RuntimeError("cannot record this one")

            await settlement.pay_due(sessions, gateway=escrow, on_settled=on_settled, now=utcnow() + later)
        finally:
            await engine.dispose()

    asyncio.run(run(timedelta(0), stuck["refund_id"]))
    status = {
        r: client.get(f"/v1/refunds/{r}", headers=case.agent).json()["status"]
        for r in (stuck["refund_id"], fine["refund_id"])
    }
    assert status == {stuck["refund_id"]: "pending", fine["refund_id"]: "succeeded"}
    assert order_money(client, case) == (1_500, 3_500)  # the stuck one is still owed, still counted
    asyncio.run(run(timedelta(minutes=2), None))  # its lease expired: asked again, with the same key
    assert client.get(f"/v1/refunds/{stuck['refund_id']}", headers=case.agent).json()["status"] == "succeeded"
    assert escrow.calls.count(stuck["refund_id"]) == 2
    assert escrow.total >= 1_500
    assert len({escrow.refunds[stuck["refund_id"]].id, escrow.refunds[fine["refund_id"]].id}) == 2
    assert ledger_is_balanced(settings)
