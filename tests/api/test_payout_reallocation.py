"""Giving a shop back what it no longer bears (docs/api.md, Payouts): an appeal decided in its favour
moves the appealed decision's seller part to the operator; a refund that fails (before or after it
succeeded) or a payout refused undoes its recovery — wherever the part sits (escrow, a pending
reversal, a reversal made, a debt, netted) — on SQLite and PostgreSQL, through the fake provider.
Orders are delivered and released "in 2001", like tests/api/test_payouts.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine, utcnow
from app.disputes import transitions
from app.disputes.models import Dispute
from app.disputes.workflow import Action
from app.ledger.models import LedgerEntry
from app.payouts import reallocation, reversals, settlement
from app.payouts import service as payouts
from app.payouts.gateway import PaymentProviderError, ProviderEvent, ProviderRefund
from app.payouts.models import Refund
from app.payouts.rules import Split
from app.settings import Settings
from tests.api.test_payout_reversals import account_total, released_case, reversal_rows, run_reversals
from tests.api.test_payouts import DUE, delivered_case, delivered_case_for_shop, payout_of, run_release
from tests.factories import Case, Tokens, World, deactivate_all, grant, ledger_is_balanced, money, pay, subscribe
from tests.fakes import FakeEscrow


def run(settings: Settings, work: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(settings.database_url)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def shop_total(settings: Settings, shop: str, account: str) -> int:
    async def work(session: Any) -> int:
        total = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.party_id == shop, LedgerEntry.account == account
            )
        )
        return int(total or 0)

    return int(run(settings, work))


def balance(client: TestClient[Any], case: Case) -> dict[str, Any]:
    (eur,) = client.get(f"/v1/sellers/{case.shop}/balance", headers=case.finance).json()["balances"]
    return eur  # type: ignore[no-any-return]


def decided_against_the_shop(case: Case, settings: Settings, escrow: FakeEscrow, amount: int = 1_000) -> str:
    """A dispute decided against the shop (seller-funded partial refund), the refund paid: resolved."""
    case.open()
    case.act(case.seller, "escalate", note="The buyer refuses everything.")
    case.act(case.arbitrator, "claim")
    case.act(
        case.arbitrator,
        "decide",
        resolution={"type": "refund_partial", "amount": money(amount), "funded_by": "seller", "at_fault": "seller"},
        rationale="The photos show a defect.",
    )
    pay(settings, escrow)
    assert case.get(case.arbitrator)["status"] == "resolved"
    (refund,) = case.client.get("/v1/refunds", params={"order_id": case.order_id}, headers=case.arbitrator).json()[
        "items"
    ]
    return str(refund["refund_id"])


def appeal_won(case: Case, at_fault: str = "buyer") -> None:
    case.act(case.seller, "appeal", note="The item was fine.")
    case.act(case.other_arbitrator, "claim")
    case.act(case.other_arbitrator, "decide", resolution={"type": "deny", "at_fault": at_fault}, rationale="r")
    assert case.dispute["status"] == "resolved"


def close_dispute(settings: Settings, case: Case) -> None:
    """The 14 days without reopen or appeal pass: the dispute closes and the order's escrow is held again."""

    async def work(session: Any) -> None:
        dispute = await session.get(Dispute, case.dispute["dispute_id"], with_for_update=True)
        await transitions.apply_system_action(
            session, dispute, Action.CLOSE_RESOLVED, data={}, now=utcnow(), settings=settings
        )

    run(settings, work)


def fail_late(settings: Settings, refund_id: str) -> str:
    """Stripe fails a refund after it succeeded (a closed card): its ``refund.failed`` event applied."""

    async def work(session: Any) -> str:
        refund = await session.get(Refund, refund_id)
        found = ProviderRefund(id=refund.provider_ref, status="failed", amount=refund.amount, currency="EUR")
        event = ProviderEvent(
            id=f"evt_{uuid.uuid4().hex}", type="refund.failed", refund=found, charge_id=None, our_refund_id=refund_id
        )
        return str(await settlement.apply_provider_event(session, event, on_settled=None))

    return str(run(settings, work))


# --- appeals --------------------------------------------------------------------------------------------


def test_an_appeal_won_before_release_puts_the_part_back_in_escrow_and_the_release_pays_it(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = delivered_case(client, auth, world)
    refund_id = decided_against_the_shop(case, settings, escrow)
    assert account_total(settings, case.order_id, "escrow") == -4_000
    appeal_won(case)

    refund = client.get(f"/v1/refunds/{refund_id}", headers=case.arbitrator).json()
    assert (refund["funded_by"], refund["seller_share"], refund["status"]) == ("operator", money(0), "succeeded")
    assert account_total(settings, case.order_id, "escrow") == -5_000  # the buyer keeps it; the shop is whole
    assert account_total(settings, case.order_id, "platform_goodwill", kind="reallocated") == 1_000

    async def limits(session: Any) -> Split:
        return await payouts.compensation_on_order(session, order_id=case.order_id, currency="EUR")

    assert run(settings, limits) == Split(seller=0, operator=1_000)  # counted as the operator's from now on

    async def again(session: Any) -> int:  # the same decision processed twice moves nothing twice
        return await reallocation.reallocate(session, await session.get(Refund, refund_id), reason="x", now=utcnow())

    assert run(settings, again) == 0
    close_dispute(settings, case)
    run_release(settings, escrow)
    payout = payout_of(client, case.order_id, case.finance)
    assert payout is not None
    assert (payout["amount"], payout["status"]) == (money(4_500), "paid")
    assert ledger_is_balanced(settings)


def test_an_appeal_that_finds_the_shop_at_fault_moves_nothing(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = delivered_case(client, auth, world)
    refund_id = decided_against_the_shop(case, settings, escrow)
    appeal_won(case, at_fault="seller")
    assert client.get(f"/v1/refunds/{refund_id}", headers=case.arbitrator).json()["funded_by"] == "seller"
    assert account_total(settings, case.order_id, "escrow") == -4_000


def test_an_appeal_won_after_release_cancels_a_reversal_not_attempted_yet(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund_id = decided_against_the_shop(case, settings, escrow)
    assert [r.status for r in reversal_rows(settings, refund_id)] == ["pending"]
    appeal_won(case)
    assert [r.status for r in reversal_rows(settings, refund_id)] == ["canceled"]
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert (balance(client, case)["debt"], balance(client, case)["owed"]) == (money(0), money(0))
    assert ledger_is_balanced(settings)


def test_an_appeal_won_after_the_reversal_owes_the_part_back_with_the_next_release(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    admin = auth("admin")
    endpoint = subscribe(client, admin, "https://127.0.0.1:9/hooks", ["seller.credit_recorded"])
    try:
        escrow = FakeEscrow()
        case = released_case(client, auth, world, settings, escrow)
        refund_id = decided_against_the_shop(case, settings, escrow)
        run_reversals(settings, escrow)
        assert [r.status for r in reversal_rows(settings, refund_id)] == ["succeeded"]
        appeal_won(case)
        assert balance(client, case)["owed"] == money(1_000)
        assert balance(client, case)["debt"] == money(0)
        log = client.get(
            f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", params={"limit": 200}, headers=admin
        ).json()["items"]
        sent = [json.loads(d["payload"]) for d in log]
        (credit,) = [e for e in sent if e["data"]["refund_id"] == refund_id]
        assert (credit["type"], credit["data"]["owed"], credit["data"]["seller_id"]) == (
            "seller.credit_recorded",
            money(1_000),
            case.shop,
        )
        again = delivered_case_for_shop(client, auth, case)
        run_release(settings, escrow)
        paid = payout_of(client, again, case.finance)
        assert paid is not None
        assert paid["amount"] == money(4_500 + 1_000)  # the share plus what the shop was owed back
        assert balance(client, case)["owed"] == money(0)
        assert ledger_is_balanced(settings)
    finally:
        deactivate_all(client, admin)


def test_an_appeal_won_after_a_refused_reversal_reduces_the_debt_or_owes_what_was_netted(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund_id = decided_against_the_shop(case, settings, escrow, amount=1_500)
    escrow.refuse_reversal(reversals.reversal_key(refund_id))
    run_reversals(settings, escrow)
    assert balance(client, case)["debt"] == money(1_500)
    # 1 000 of the debt is netted by the shop's next release (an order whose share is 1 000).
    again = delivered_case_for_shop(client, auth, case)
    grant(client, case.arbitrator, order_id=again, kind="credit", amount=money(3_500), funded_by="seller")
    run_release(settings, escrow)
    assert balance(client, case)["debt"] == money(500)
    appeal_won(case)
    assert (balance(client, case)["debt"], balance(client, case)["owed"]) == (money(0), money(1_000))
    assert shop_total(settings, case.shop, "seller_debt") == 0
    assert ledger_is_balanced(settings)


# --- a grant while the payout's transfer is pending -----------------------------------------------------


def pending_payout_case(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings, escrow: FakeEscrow
) -> Case:
    case = delivered_case(client, auth, world)
    escrow.fail_transfers_of[case.order_id] = [PaymentProviderError("Stripe 500", code=None, transient=True)]
    run_release(settings, escrow)
    payout = payout_of(client, case.order_id, case.finance)
    assert payout is not None
    assert payout["status"] == "pending"
    return case


def test_a_grant_while_the_payout_is_pending_is_recovered_once_the_transfer_is_made(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = pending_payout_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(1_000), funded_by="seller"
    )
    assert account_total(settings, case.order_id, "escrow") == 0  # never taken from the closed escrow
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []  # the transfer does not exist yet
    run_release(settings, escrow, now=DUE + timedelta(hours=1))
    payout = payout_of(client, case.order_id, case.finance)
    assert payout is not None
    assert (payout["status"], payout["amount"]) == ("paid", money(4_500))
    run_reversals(settings, escrow)
    key = reversals.reversal_key(refund["refund_id"])
    assert escrow.reversal_calls == [(key, payout["provider_ref"], 1_000)]
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["succeeded"]
    assert ledger_is_balanced(settings)


def test_a_grant_while_the_payout_is_pending_goes_back_to_escrow_when_the_transfer_is_refused(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = pending_payout_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="credit", amount=money(1_000), funded_by="seller"
    )
    escrow.fail_transfers_of[case.order_id] = [PaymentProviderError("account closed", code="x", transient=False)]
    run_release(settings, escrow, now=DUE + timedelta(hours=1))
    payout = payout_of(client, case.order_id, case.finance)
    assert payout is not None
    assert payout["status"] == "failed"
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["canceled"]
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert account_total(settings, case.order_id, "escrow") == -4_000  # held again, the shop's part taken
    assert (balance(client, case)["held"], balance(client, case)["debt"]) == (money(3_500), money(0))
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []
    assert ledger_is_balanced(settings)


# --- refunds that fail once their part was recovered -------------------------------------------------


def test_a_refund_failing_after_its_reversal_owes_the_shop_its_part_back(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="seller"
    )
    pay(settings, escrow)
    run_reversals(settings, escrow)
    assert fail_late(settings, refund["refund_id"]) == "applied"
    assert fail_late(settings, refund["refund_id"]) == "ignored"  # once only
    assert balance(client, case)["owed"] == money(1_000)
    assert account_total(settings, case.order_id, "escrow") == 0
    assert ledger_is_balanced(settings)


def test_a_refund_failing_before_its_reversal_was_attempted_cancels_it(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="seller"
    )
    pay(settings, escrow)
    assert fail_late(settings, refund["refund_id"]) == "applied"
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["canceled"]
    run_reversals(settings, escrow)
    assert escrow.reversal_calls == []
    assert (balance(client, case)["owed"], balance(client, case)["debt"]) == (money(0), money(0))
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert ledger_is_balanced(settings)


def test_a_refund_failing_after_its_reversal_was_refused_reduces_the_debt(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)
    refund = grant(
        client, case.arbitrator, order_id=case.order_id, kind="partial", amount=money(1_000), funded_by="seller"
    )
    escrow.refuse_reversal(reversals.reversal_key(refund["refund_id"]))
    pay(settings, escrow)
    run_reversals(settings, escrow)
    assert balance(client, case)["debt"] == money(1_000)
    fail_late(settings, refund["refund_id"])
    assert (balance(client, case)["debt"], balance(client, case)["owed"]) == (money(0), money(0))
    assert ledger_is_balanced(settings)


def test_a_refund_refused_after_part_of_its_seller_part_became_a_debt_at_once_takes_nothing(
    client: TestClient[Any], auth: Tokens, world: World, settings: Settings
) -> None:
    escrow = FakeEscrow()
    case = released_case(client, auth, world, settings, escrow)  # 4 500 transferred
    refund = grant(client, case.arbitrator, order_id=case.order_id, kind="full", funded_by="seller")  # 5 000
    assert [r.amount for r in reversal_rows(settings, refund["refund_id"])] == [4_500]
    assert balance(client, case)["debt"] == money(500)  # more than the transfer holds: a debt at once
    escrow.fail_for[refund["refund_id"]] = [PaymentProviderError("card closed", code="x", transient=False)]
    pay(settings, escrow)
    assert client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.arbitrator).json()["status"] == "failed"
    assert [r.status for r in reversal_rows(settings, refund["refund_id"])] == ["canceled"]
    assert (balance(client, case)["debt"], balance(client, case)["owed"]) == (money(0), money(0))
    assert account_total(settings, case.order_id, "seller_recoverable") == 0
    assert ledger_is_balanced(settings)
