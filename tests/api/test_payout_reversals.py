"""Recovering after release (SPEC §7, §8.1): the seller part of a compensation granted after the order's
payout is taken back from the shop's transfer (refund first, recover second), or becomes the shop's debt
when Stripe refuses the reversal — through a fake provider with Stripe's idempotency, on SQLite and
PostgreSQL. Orders are delivered and released "in 2001", like tests/api/test_payouts.py."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine, utcnow
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.payouts import reversals
from app.payouts.gateway import PaymentProviderError
from app.payouts.models import TransferReversal
from app.settings import Settings
from tests.api.test_payouts import delivered_case, delivered_case_for_shop, payout_of, run_release
from tests.factories import Case, Tokens, World, deactivate_all, grant, ledger_is_balanced, money, pay, subscribe, uid
from tests.fakes import FakeEscrow


@pytest.fixture
def finance(auth: Tokens) -> dict[str, str]:
    return auth("finance", uid("fin"))


def run_reversals(settings: Settings, escrow: FakeEscrow, *, passes: int = 1) -> list[int]:
    """``passes`` reversal passes at once, each with its own connection (two workers)."""

    async def run() -> list[int]:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            now = utcnow() + timedelta(seconds=1)
            return list(
                await asyncio.gather(*(reversals.reverse_due(sessions, gateway=escrow, now=now) for _ in range(passes)))
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def account_total(settings: Settings, order_id: str, account: str, *, kind: str | None = None) -> int:
    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                query = (
                    select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                    .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
                    .where(LedgerEntry.order_id == order_id, LedgerEntry.account == account)
                )
                if kind is not None:
                    query = query.where(LedgerTransaction.kind == kind)
                return int(await conn.scalar(query) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def reversal_rows(settings: Settings, refund_id: str) -> list[TransferReversal]:
    async def run() -> list[TransferReversal]:
        engine = create_engine(settings.database_url)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return list(
                    await session.scalars(select(TransferReversal).where(TransferReversal.refund_id == refund_id))
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def released_case(client: TestClient[Any], auth: Tokens, world: World, settings: Settings, escrow: FakeEscrow) -> Case:
    """An order of 5 000 (commission 500) released: 4 500 transferred to its shop."""
    case = delivered_case(client, auth, world)
    run_release(settings, escrow)
    return case


def test_a_seller_funded_refund_after_release_reverses_the_shops_transfer_by_its_part(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["status"] == "paid"

    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_200), funded_by="seller"
    )
    # Refund first: the buyer's refund is paid whatever happens to the reversal.
    assert account_total(settings, case.order_id, "escrow") == 0  # the escrow never goes negative
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["pending"]
    pay(settings, escrow)
    assert client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.arbitrator).json()["status"] == "succeeded"

    run_reversals(settings, escrow)
    key = reversals.reversal_key(refund["refund_id"])
    assert escrow.reversal_calls == [(key, payout["provider_ref"], 1_200)]
    (row,) = reversal_rows(settings, refund["refund_id"])
    assert (row.status, row.amount, row.provider_ref) == ("succeeded", 1_200, escrow.reversals[key].id)
    after = payout_of(client, case.order_id, finance)
    assert after is not None
    assert after["reversed"] == money(1_200)
    assert account_total(settings, case.order_id, "escrow") == 0
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert account_total(settings, case.order_id, "provider_balance", kind="transfer_reversed") == 1_200
    assert ledger_is_balanced(settings)


def test_an_operator_funded_refund_after_release_reverses_nothing(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(800), funded_by="operator"
    )
    assert reversal_rows(settings, refund["refund_id"]) == []
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []
    assert account_total(settings, case.order_id, "escrow") == 0


def test_a_split_credit_note_after_release_reverses_only_the_shops_part(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client,
        case.arbitrator,
        order_id=case.order_id,
        kind="credit",
        amount=money(1_000),
        funded_by="split",
        seller_share=money(300),
    )
    run_reversals(settings, escrow)
    assert [amount for key, _, amount in escrow.reversal_calls if key.endswith(refund["refund_id"])] == [300]
    assert account_total(settings, case.order_id, "escrow") == 0
    assert ledger_is_balanced(settings)


def test_a_refused_reversal_becomes_the_shops_debt_netted_from_its_next_release(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_500), funded_by="seller"
    )
    escrow.refuse_reversal(reversals.reversal_key(refund["refund_id"]))
    run_reversals(settings, escrow)  # the buyer's refund is not paid yet: the shop's money is not taken yet
    assert escrow.reversal_calls == []
    pay(settings, escrow)
    run_reversals(settings, escrow)
    (row,) = reversal_rows(settings, refund["refund_id"])
    assert row.status == "debt"
    assert (row.failure_reason or "").startswith("balance_insufficient")
    assert account_total(settings, case.order_id, "seller_debt") == 1_500
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["reversed"] == money(0)

    run_reversals(settings, escrow)  # a debt is final: never asked again
    assert len(escrow.reversal_calls) == 1
    # The same shop's next order pays the debt back first.
    again = delivered_case_for_shop(client, auth, case)
    run_release(settings, escrow)
    netted = payout_of(client, again, finance)
    assert netted is not None
    assert (netted["amount"], netted["debt_netted"]) == (money(3_000), money(1_500))
    assert ledger_is_balanced(settings)


def test_a_transient_error_is_retried_with_the_same_key(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(400), funded_by="seller"
    )
    key = reversals.reversal_key(refund["refund_id"])
    escrow.fail_reversals_for[key] = [PaymentProviderError("Stripe 500", code=None, transient=True)]
    run_reversals(settings, escrow)
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["pending"]

    async def later() -> int:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            return await reversals.reverse_due(sessions, gateway=escrow, now=utcnow() + timedelta(hours=1))
        finally:
            await engine.dispose()

    asyncio.run(later())
    assert [k for k, _, _ in escrow.reversal_calls] == [key, key]
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["succeeded"]


def test_two_reversal_passes_at_once_reverse_the_transfer_once(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="promo_code", amount=money(600), funded_by="seller"
    )
    run_reversals(settings, escrow, passes=2)
    run_reversals(settings, escrow)
    assert len(escrow.reversal_calls) == 1
    payout = payout_of(client, case.order_id, finance)
    assert payout is not None
    assert payout["reversed"] == money(600)
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["succeeded"]


def test_a_reversal_and_a_debt_are_announced_to_the_marketplace(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    admin = auth("admin")
    endpoint = subscribe(client, admin, "https://127.0.0.1:9/hooks", ["payout.reversed", "seller.debt_recorded"])
    try:
        escrow = FakeEscrow()
        reversed_case = released_case(client, auth, world, settings, escrow)
        indebted = released_case(client, auth, world, settings, escrow)
        grant(
            client,
            reversed_case.arbitrator,
            order_id=reversed_case.order_id,
            kind="credit",
            amount=money(700),
            funded_by="seller",
        )
        refused = grant(
            client,
            indebted.arbitrator,
            order_id=indebted.order_id,
            kind="credit",
            amount=money(900),
            funded_by="seller",
        )
        escrow.refuse_reversal(reversals.reversal_key(refused["refund_id"]))
        run_reversals(settings, escrow)
        log = client.get(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", params={"limit": 200}, headers=admin
        ).json()["items"]
        sent = {json.loads(d["payload"])["data"]["order_id"]: json.loads(d["payload"]) for d in log}
        assert sent[reversed_case.order_id]["type"] == "payout.reversed"
        assert sent[reversed_case.order_id]["data"]["reversed"] == money(700)
        assert sent[reversed_case.order_id]["data"]["reversal"]["amount"] == money(700)
        assert sent[indebted.order_id]["type"] == "seller.debt_recorded"
        assert sent[indebted.order_id]["data"]["amount"] == money(900)
        assert sent[indebted.order_id]["data"]["seller_id"] == indebted.shop
    finally:
        deactivate_all(client, admin)


def test_a_refund_the_provider_refuses_after_release_takes_nothing_from_the_shop(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, finance: dict[str, str]
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="seller"
    )
    escrow.fail_for[refund["refund_id"]] = [PaymentProviderError("card closed", code="x", transient=False)]
    pay(settings, escrow)
    assert client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.arbitrator).json()["status"] == "failed"
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["canceled"]
    assert account_total(settings, case.order_id, "escrow") == 0
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert ledger_is_balanced(settings)
