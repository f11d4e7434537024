"""Every KPI formula on a small dataset whose figures were worked out by hand (in the comments below),
on SQLite and PostgreSQL. Rows are written directly with chosen timestamps, in windows of 2031 that no
other test writes in, once per database (the tests only read it), so figures for one shop are exact,
and so are figures for all shops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import create_engine
from app.reports import metrics
from app.reports.kpis import Window
from app.reports.schemas import KpiReport, SellerMetrics
from app.settings import Settings
from tests.factories import make_settings
from tests.factories import report_dispute as dispute
from tests.factories import report_order as order
from tests.factories import report_refund as refund
from tests.factories import report_shop as shop
from tests.factories import run_in_transaction as run

START = datetime(2031, 3, 1, tzinfo=UTC)
END = datetime(2031, 4, 1, tzinfo=UTC)
NOW = datetime(2031, 4, 10, tzinfo=UTC)


def at(day: int, seconds: float = 0, month: int = 3) -> datetime:
    return datetime(2031, month, day, 10, tzinfo=UTC) + timedelta(seconds=seconds)


async def the_dataset(session: AsyncSession) -> tuple[str, str]:
    """Shop A: 12 orders in March 2031 (o4 in GBP), 7 disputes; shop B: 1 order, 1 dispute."""
    a, b = shop(session), shop(session)
    await session.flush()
    o = ["", *(order(session, a, at(1, 3600 * i), "GBP" if i == 4 else "EUR") for i in range(1, 13))]
    outside_before = order(session, a, datetime(2031, 2, 20, tzinfo=UTC))
    order(session, a, END)  # at `to`: excluded
    ob = order(session, b, at(5))
    await session.flush()
    # D1: answered after 1 h, resolved after 2 h, never escalated (first contact), a return, CSAT 5.
    dispute(session, o[1], a, at(2), status="resolved", first_response_at=3600, first_resolved_at=7200,
            return_required=True, csat_score=5)  # fmt: skip
    # D2: escalated at +1 h (response due +2 h, resolution due +25 h); the operator answered at +1.5 h
    # but resolved at +100 000 s, after the due (breach). The shop was found at fault. CSAT 4.
    dispute(session, o[2], a, at(3), status="closed", first_response_at=1800, first_escalated_at=3600,
            first_response_due=7200, resolution_due=90_000, first_operator_response_at=5400,
            sla_resolved_at=100_000, first_resolved_at=100_000, closed_at=200_000, at_fault="seller",
            csat_score=4)  # fmt: skip
    # D3: resolved at +10 000 s, reopened (escalated +20 000 s, response due +34 400 s): the operator
    # answered at +40 000 s (breach). A return; the buyer was at fault. CSAT 2.
    dispute(session, o[3], a, at(4), status="resolved", first_response_at=7200, first_resolved_at=10_000,
            reopened=True, first_escalated_at=20_000, first_response_due=34_400, resolution_due=192_800,
            first_operator_response_at=40_000, sla_resolved_at=50_000, return_required=True,
            at_fault="buyer", csat_score=2)  # fmt: skip
    # D4: escalated; the operator answered exactly at the due (not a breach), resolved in time, appealed
    # afterwards. The carrier was at fault. CSAT 3 (not satisfied).
    dispute(session, o[4], a, at(5), status="escalated", first_response_at=600, first_escalated_at=1000,
            first_response_due=4600, resolution_due=173_800, first_operator_response_at=4600,
            sla_resolved_at=3000, first_resolved_at=3000, appealed=True, at_fault="carrier",
            csat_score=3)  # fmt: skip
    # D5: nobody answered yet, never escalated: in no duration, no rate but the counts.
    dispute(session, o[5], a, at(20))
    # D6: escalated by the shop at +100 s; nobody from the operator since (on NOW: a breach).
    dispute(session, o[6], a, at(25), status="escalated", first_response_at=100, first_escalated_at=100,
            first_response_due=3700, resolution_due=86_500)  # fmt: skip
    # D7: escalated, then withdrawn at +500 s, before any due: the clock stopped in time (no breach).
    dispute(session, o[7], a, at(26), status="closed", first_response_at=100, first_escalated_at=100,
            first_response_due=3700, resolution_due=86_500, closed_at=500)  # fmt: skip
    # Outside the window: before it, and at its end.
    dispute(session, outside_before, a, datetime(2031, 2, 25, tzinfo=UTC), first_response_at=1, at_fault="seller")
    dispute(session, o[8], a, END, first_response_at=1, csat_score=1)
    # Shop B's one dispute: answered after 50 s, resolved after 500 s.
    dispute(session, ob, b, at(6), status="resolved", first_response_at=50, first_resolved_at=500, csat_score=1)
    # Refunds on shop A's orders of March: o1 twice, o2 pending, o3 credit, o4 in GBP split; o5's failed.
    refund(session, o[1], at(2, 100), amount=1000)
    refund(session, o[1], at(9), amount=500)
    refund(session, o[2], at(3, 100), amount=2500, status="pending")
    refund(session, o[3], at(4, 100), kind="credit", amount=700, funded_by="operator")
    refund(session, o[4], at(5, 100), amount=1500, currency="GBP", funded_by="split")
    refund(session, o[5], at(20, 100), amount=999, status="failed")
    refund(session, outside_before, at(1), amount=3000)  # its order is outside the window
    await session.flush()
    return a, b


def settings_of(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture(scope="module")
def dataset(db_url: str) -> tuple[str, str]:
    """Written once per database: the tests only read it."""
    return run(db_url, the_dataset)


def report(db_url: str, window: Window) -> KpiReport:
    """Through the app's path: on PostgreSQL the statements run at once on a reader pool, as in app/main.py."""

    async def work(session: AsyncSession) -> KpiReport:
        if db_url.startswith("sqlite"):
            return await metrics.kpi_report(session, window=window, now=NOW)
        reader = create_engine(db_url, pool_size=2)
        try:
            return await metrics.kpi_report(session, window=window, now=NOW, reader=reader)
        finally:
            await reader.dispose()

    return run(db_url, work)


def test_every_kpi_of_one_shop_matches_the_hand_computed_figures(db_url: str, dataset: tuple[str, str]) -> None:
    a, _ = dataset
    kpi = report(db_url, Window(START, END, a))
    assert (kpi.orders, kpi.disputes_opened) == (12, 7)
    assert kpi.disputes_per_100_orders == 58.333333  # 700 / 12
    # First responses: 100, 100, 600, 1800, 3600, 7200 (D5 has none): n = 6, ranks 3 and ceil(5.4) = 6.
    assert (kpi.first_response_seconds.p50, kpi.first_response_seconds.p90) == (600.0, 7200.0)
    # Resolutions: 3000, 7200, 10 000, 100 000: n = 4, ranks 2 and ceil(3.6) = 4.
    assert (kpi.resolution_seconds.p50, kpi.resolution_seconds.p90) == (7200.0, 100_000.0)
    # Resolved: D1-D4. Never escalated: D1 (1/4). Reopened or appealed: D3, D4 (2/4).
    assert (kpi.first_contact_resolution_rate, kpi.reopen_rate) == (0.25, 0.5)
    # Escalated: D2, D3, D4, D6, D7; breached: D2 (resolution), D3 (response), D6 (missing past due).
    assert kpi.sla_breach_rate == 0.6
    # CSAT 5, 4, 2, 3: mean 3.5, two of four are 4 or 5.
    assert (kpi.csat.average, kpi.csat.responses, kpi.csat.satisfied_rate) == (3.5, 4, 0.5)
    refunds = [(r.currency, r.kind, r.funded_by, r.count, r.amount.amount, r.amount.currency) for r in kpi.refunds]
    assert refunds == [
        ("EUR", "credit", "operator", 1, 700, "EUR"),
        ("EUR", "partial", "seller", 3, 4000, "EUR"),  # 1000 + 500 + 2500 (pending counts; failed not)
        ("GBP", "partial", "split", 1, 1500, "GBP"),
    ]
    faults = kpi.decisions_by_fault
    assert (faults.seller, faults.buyer, faults.carrier, faults.operator, faults.none) == (1, 1, 1, 0, 0)


def test_all_shops_add_the_other_shop_and_odd_counts_take_the_middle(db_url: str, dataset: tuple[str, str]) -> None:
    kpi = report(db_url, Window(START, END))
    assert (kpi.orders, kpi.disputes_opened, kpi.seller_id) == (13, 8, None)
    # First responses: 50, 100, 100, 600, 1800, 3600, 7200: n = 7, ranks 4 and ceil(6.3) = 7.
    assert (kpi.first_response_seconds.p50, kpi.first_response_seconds.p90) == (600.0, 7200.0)
    # Resolutions: 500, 3000, 7200, 10 000, 100 000: n = 5, ranks 3 and ceil(4.5) = 5.
    assert (kpi.resolution_seconds.p50, kpi.resolution_seconds.p90) == (7200.0, 100_000.0)
    # Resolved 5, first contact D1 and B's: 2/5; CSAT 5, 4, 2, 3, 1: mean 3, 2 of 5 satisfied.
    assert kpi.first_contact_resolution_rate == 0.4
    assert (kpi.csat.average, kpi.csat.responses, kpi.csat.satisfied_rate) == (3.0, 5, 0.4)


def test_a_window_with_nothing_to_measure_answers_null_not_zero(db_url: str, dataset: tuple[str, str]) -> None:
    a, _ = dataset
    kpi = report(db_url, Window(datetime(2031, 6, 1, tzinfo=UTC), datetime(2031, 7, 1, tzinfo=UTC), a))
    assert (kpi.orders, kpi.disputes_opened, kpi.disputes_per_100_orders) == (0, 0, None)
    assert (kpi.first_response_seconds.p50, kpi.first_response_seconds.p90) == (None, None)
    assert (kpi.resolution_seconds.p50, kpi.resolution_seconds.p90) == (None, None)
    assert (kpi.first_contact_resolution_rate, kpi.reopen_rate, kpi.sla_breach_rate) == (None, None, None)
    assert (kpi.csat.average, kpi.csat.responses, kpi.csat.satisfied_rate) == (None, 0, None)
    assert kpi.refunds == []
    # Orders but no dispute: a measured zero (o8-o12 of shop A, 8 to 12 hours after March 1st, 10:00).
    quiet = report(db_url, Window(at(1, 3600 * 8), at(1, 3600 * 13), a))
    assert (quiet.orders, quiet.disputes_opened, quiet.disputes_per_100_orders) == (5, 0, 0.0)


def test_a_scorecard_adds_return_refund_and_defect_rates_and_their_alerts(
    db_url: str, dataset: tuple[str, str]
) -> None:
    a, b = dataset

    async def work(session: AsyncSession, seller_id: str) -> SellerMetrics:
        return await metrics.seller_metrics(
            session, window=Window(START, END, seller_id), now=NOW, settings=settings_of(db_url)
        )

    card = run(db_url, lambda s: work(s, a))
    assert card.disputes_opened == 7
    # Returns: D1, D3 of 12 orders; refunded orders: o1-o4 (o5's refund failed); at fault: o2's dispute.
    assert (card.return_rate, card.refund_rate, card.defect_rate) == (0.166667, 0.333333, 0.083333)
    assert [(x.metric, x.value, x.threshold) for x in card.alerts] == [
        ("return_rate", 0.166667, 0.05),
        ("refund_rate", 0.333333, 0.08),
        ("defect_rate", 0.083333, 0.01),
    ]  # first response p90 is 7200 s, under 24 h
    small = run(db_url, lambda s: work(s, b))
    # One order, one dispute, no return, refund or fault: rates of 0, and too few orders for any alert.
    assert (small.orders, small.return_rate, small.refund_rate, small.defect_rate, small.alerts) == (1, 0, 0, 0, [])
