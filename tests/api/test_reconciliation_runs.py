"""Reconciliations of a provider period (pulled through a fake gateway, every page), the period's edges, a
refund the provider failed matched against our reversal, and a run that crashed started again from scratch.
SQLite and PostgreSQL; each test keeps to a period of its own (2019, 2020) or to its own provider ids.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth import Actor, Role
from app.db import create_engine, utcnow
from app.payouts.gateway import ProviderBalanceTransaction
from app.reconciliation import job, matching
from app.reconciliation.models import Reconciliation, reconciliation_rows
from app.reconciliation.parsing import Layout
from app.reconciliation.service import start_reconciliation
from app.settings import Settings
from devtools.reconciliation_data import ledger_entries, write_period
from tests.factories import Case, Tokens, World, book_ledger, grant, money, pay, uid
from tests.fakes import FakeBalance, FakeEscrow

A_FROM, A_TO, B_TO = (datetime(2019, m, 1, tzinfo=UTC) for m in (3, 4, 5))
SECOND = timedelta(seconds=1)


def movement(kind: str, pid: str, amount: int, at: datetime, currency: str = "EUR") -> Any:
    """A ledger transaction as the generator hands them over."""
    entries = ledger_entries(kind, amount, currency, "shop_edges")
    ledger_kind = {"charge": "capture", "refund": "refund_paid", "refund_failure": "refund_reversed"}[kind]
    return (uid("tx")[:36], ledger_kind, pid, "ord_edges", at, entries)


def listed(type_: str, source: str, amount: int, at: datetime, currency: str = "EUR") -> ProviderBalanceTransaction:
    return ProviderBalanceTransaction(
        id=f"txn_{uid('t')}",
        type=type_,
        amount=amount,
        fee=0,
        net=amount,
        currency=currency,
        source=source,
        created=int(at.timestamp()),
    )


def run_provider(settings: Settings, gateway: Any, rec_id: str) -> None:
    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await job.run_reconciliation(async_sessionmaker(engine, expire_on_commit=False), gateway, rec_id)
        finally:
            await engine.dispose()

    asyncio.run(run())


def reconcile_period(
    client: TestClient[Any], settings: Settings, who: dict[str, str], gateway: Any, start: datetime, end: datetime
) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    started = client.post("/v1/reconciliations", json={"from": start.isoformat(), "to": end.isoformat()}, headers=who)
    assert started.status_code == 202, started.text
    rec_id = started.json()["reconciliation_id"]
    run_provider(settings, gateway, rec_id)
    rec = client.get(f"/v1/reconciliations/{rec_id}", headers=who).json()
    items = client.get(f"/v1/reconciliations/{rec_id}/items", params={"limit": 200}, headers=who).json()["items"]
    return rec, {(item["provider_id"], item["type"]): item["status"] for item in items}


def test_a_movement_booked_before_midnight_and_listed_after_is_no_break_in_either_period(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    book_ledger(
        settings,
        [
            [
                movement("charge", "ch_edge_late", 10_000, A_TO - SECOND),  # listed just after A ends
                movement("charge", "ch_edge_early", 20_000, A_FROM),  # listed just before A starts
                movement("charge", "ch_edge_in", 30_000, A_FROM + timedelta(days=9)),
                movement("charge", "ch_edge_lost", 40_000, A_FROM + timedelta(days=19)),  # never listed
            ]
        ],
    )
    fees = [listed("stripe_fee", "", -25, A_FROM + timedelta(hours=h)) for h in range(150)]  # two pages and more
    provider = FakeBalance(
        [
            listed("charge", "ch_edge_late", 10_000, A_TO + SECOND),
            listed("charge", "ch_edge_early", 20_000, A_FROM - SECOND),
            listed("charge", "ch_edge_in", 30_000, A_FROM + timedelta(days=9, seconds=2)),
            listed("payout", "po_bank", -500_000, A_FROM + timedelta(days=3)),
            *fees,
        ]
    )
    finance = auth("finance")
    rec, found = reconcile_period(client, settings, finance, provider, A_FROM, A_TO)
    assert rec["status"] == "done", rec
    assert found == {("ch_edge_in", "charge"): "matched", ("ch_edge_lost", "charge"): "missing_in_provider"}
    assert rec["counts"] == {
        "matched": 1,
        "amount_mismatch": 0,
        "missing_in_ledger": 0,
        "missing_in_provider": 1,
        "ignored": 151,
    }
    assert rec["progress"]["rows"] == 154  # the edge rows are pulled too (they only absorb)
    assert provider.pages >= 2
    assert rec["totals"] == [{"currency": "EUR", "provider_net": 30_000, "ledger_net": 70_000, "gross_drift": 40_000}]
    rec, found = reconcile_period(client, settings, finance, provider, A_TO, B_TO)
    assert found == {("ch_edge_late", "charge"): "matched"}  # booked in A, matched where it is listed
    assert rec["counts"]["matched"] == 1


def test_another_currency_or_an_unbooked_refund_is_a_break_with_its_reason(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    start, end = datetime(2019, 6, 1, tzinfo=UTC), datetime(2019, 7, 1, tzinfo=UTC)
    day = timedelta(days=1)
    book_ledger(
        settings, [[movement("charge", "ch_cur", 5_000, start + day), movement("refund", "re_amt", 900, start + day)]]
    )
    provider = FakeBalance(
        [
            listed("charge", "ch_cur", 5_000, start + day, currency="USD"),
            listed("refund", "re_amt", -1_000, start + day),
            listed("refund", "re_unbooked", -700, start + 2 * day),
        ]
    )
    finance = auth("finance")
    rec, found = reconcile_period(client, settings, finance, provider, start, end)
    assert found == {
        ("ch_cur", "charge"): "amount_mismatch",
        ("re_amt", "refund"): "amount_mismatch",
        ("re_unbooked", "refund"): "missing_in_ledger",
    }
    items = client.get(f"/v1/reconciliations/{rec['reconciliation_id']}/items", headers=finance).json()["items"]
    reasons = {item["provider_id"]: item["reason"] for item in items}
    assert reasons == {
        "ch_cur": "the currencies differ",
        "re_amt": "the amounts differ",
        "re_unbooked": "listed by the provider, not in the ledger",
    }
    refund = next(item for item in items if item["provider_id"] == "re_amt")
    assert (refund["provider_amount"], refund["ledger_amount"]) == (money(-1_000), money(-900))
    assert rec["totals"] == [
        {"currency": "EUR", "provider_net": -1_700, "ledger_net": 4_100, "gross_drift": 5_800},
        {"currency": "USD", "provider_net": 5_000, "ledger_net": 0, "gross_drift": 5_000},
    ]


def test_a_refund_the_provider_failed_matches_our_refund_and_its_reversal(
    client: TestClient[Any], settings: Settings, auth: Tokens, world: World
) -> None:
    case = Case(client, auth, world)
    refund = grant(
        client, case.agent, order_id=case.order_id, kind="partial", amount=money(1_500), funded_by="operator"
    )
    escrow = FakeEscrow()
    escrow.status = "failed"  # the provider makes the refund, then answers that it failed
    pay(settings, escrow)
    failed = client.get(f"/v1/refunds/{refund['refund_id']}", headers=case.agent).json()
    assert failed["status"] == "failed"
    re_id = next(r.id for r in escrow.refunds.values())
    charge_id = case.order["payment"]["charge_id"]
    now = utcnow()
    provider = FakeBalance(
        [
            listed("charge", charge_id, 5_000, now),
            listed("refund", re_id, -1_500, now),
            listed("refund_failure", re_id, 1_500, now + SECOND),
        ]
    )
    finance = auth("finance")
    rec, _ = reconcile_period(
        client, settings, finance, provider, now - timedelta(minutes=5), now + timedelta(minutes=5)
    )
    assert rec["status"] == "done", rec
    # Other tests book at this time too (their movements are missing here): only what is listed can match.
    matched = client.get(
        f"/v1/reconciliations/{rec['reconciliation_id']}/items", params={"status": "matched"}, headers=finance
    ).json()["items"]
    assert {(item["provider_id"], item["type"]) for item in matched} == {
        (charge_id, "charge"),
        (re_id, "refund"),
        (re_id, "refund_failure"),
    }
    assert rec["counts"]["missing_in_ledger"] == 0
    assert rec["counts"]["amount_mismatch"] == 0


def test_a_run_that_crashed_starts_again_from_scratch(
    client: TestClient[Any], settings: Settings, auth: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, batches = io.StringIO(newline=""), []
    period = write_period(
        out, rows=300, breaks=2, layout=Layout.DASHBOARD, on_ledger=batches.append, seed=2020,
        start=datetime(2020, 11, 1, tzinfo=UTC), batch_size=100,
    )  # fmt: skip
    book_ledger(settings, batches)
    finance = auth("finance")
    started = client.post(
        "/v1/reconciliations", files={"file": ("export.csv", out.getvalue().encode(), "text/csv")}, headers=finance
    )
    rec_id = started.json()["reconciliation_id"]
    monkeypatch.setattr(job, "BATCH", 100)
    real_match = matching.match

    async def crash(*args: Any) -> None:
        await real_match(*args)
        raise RuntimeError("the worker died while matching")

    monkeypatch.setattr(matching, "match", crash)

    async def run(now: datetime) -> int:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            try:
                return await job.reconcile_due(sessions, gateway=None, now=now)
            finally:
                async with engine.connect() as conn:
                    staged.append(
                        await conn.scalar(select(func.count()).where(reconciliation_rows.c.reconciliation_id == rec_id))
                    )
        finally:
            await engine.dispose()

    staged: list[int] = []
    with pytest.raises(RuntimeError):
        asyncio.run(run(utcnow()))
    assert staged == [300]  # what the dead run staged is still there
    assert client.get(f"/v1/reconciliations/{rec_id}", headers=finance).json()["status"] == "running"
    assert asyncio.run(run(utcnow())) == 0  # its lease has not run out: nobody takes it
    monkeypatch.setattr(matching, "match", real_match)
    assert asyncio.run(run(utcnow() + job.LEASE + SECOND)) == 1
    rec = client.get(f"/v1/reconciliations/{rec_id}", headers=finance).json()
    assert (rec["status"], rec["counts"]) == ("done", period.counts)
    assert staged[-1] == 0  # dropped when it finished
    total = sum(count for status, count in period.counts.items() if status != "ignored")
    exported = client.get(f"/v1/reconciliations/{rec_id}/items", params={"format": "csv"}, headers=finance)
    assert len(exported.text.strip().splitlines()) == total + 1  # no item twice


def test_a_provider_period_without_a_gateway_fails_saying_so(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    finance = auth("finance")
    rec, found = reconcile_period(client, settings, finance, None, B_TO, B_TO + timedelta(days=1))
    assert rec["status"] == "failed"
    assert "SAV_STRIPE_API_KEY" in rec["error"]
    assert found == {}


def test_the_command_line_and_a_worker_never_run_the_same_reconciliation_at_once(
    settings: Settings, tmp_path: Any
) -> None:
    out, batches = io.StringIO(newline=""), []
    period = write_period(
        out, rows=200, breaks=2, layout=Layout.ITEMIZED, on_ledger=batches.append, seed=2021,
        start=datetime(2021, 11, 1, tzinfo=UTC), batch_size=100,
    )  # fmt: skip
    book_ledger(settings, batches)
    export = tmp_path / "export.csv"
    export.write_text(out.getvalue(), encoding="utf-8")
    actor = Actor(id="sav-cli", role=Role.FINANCE, name="sav reconcile")

    async def run() -> tuple[int, str, int, str, int]:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            # As `sav reconcile` starts one: created leased to itself, so a worker polling now leaves it.
            async with sessions() as session, session.begin():
                leased = await start_reconciliation(session, actor=actor, file_path=export, lease=job.LEASE)
            taken_by_worker = await job.reconcile_due(sessions, gateway=None)
            ran = await job.run_reconciliation(sessions, None, leased.reconciliation_id, leased=True)
            # One a worker holds (its lease is running): running it here leaves it alone.
            async with sessions() as session, session.begin():
                held = await start_reconciliation(session, actor=actor, file_path=export)
            assert await job._claim(sessions, now=utcnow()) is not None  # a worker took it, and holds it
            left = await job.run_reconciliation(sessions, None, held.reconciliation_id)
            async with sessions() as session:
                attempts = await session.scalar(
                    select(Reconciliation.attempts).where(Reconciliation.id == left.reconciliation_id)
                )
            return taken_by_worker, ran.status, ran.progress.rows, left.status, int(attempts or 0)
        finally:
            await engine.dispose()

    taken_by_worker, status, rows, left_status, attempts = asyncio.run(run())
    assert taken_by_worker == 0
    assert (status, rows) == ("done", period.rows)
    assert (left_status, attempts) == ("running", 1)  # not run here, and no second attempt counted
