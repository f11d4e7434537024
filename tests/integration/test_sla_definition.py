"""The queue's ``sla.breached`` and the KPIs' SLA breach are one definition (app/disputes/queue.py): on a
table of disputes whose answer was worked out by hand, the Python form (the queue's reads) and the SQL form
(the reports' counts) both give it, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.disputes import queue
from app.disputes.models import Dispute
from tests.factories import report_dispute, report_order, report_shop
from tests.factories import run_in_transaction as run

OPENED = datetime(2034, 5, 1, tzinfo=UTC)
NOW = datetime(2034, 5, 10, tzinfo=UTC)
DUE = {"first_escalated_at": 100, "first_response_due": 3700, "resolution_due": 86_500}

# (moments in seconds after the opening, breached?) — the due dates are DUE's unless said otherwise.
CASES: list[tuple[dict[str, Any], bool]] = [
    ({}, False),  # never escalated: no SLA
    ({**DUE, "first_operator_response_at": 600, "sla_resolved_at": 5000}, False),  # answered and resolved in time
    ({**DUE, "first_operator_response_at": 3700, "sla_resolved_at": 86_500}, False),  # exactly at the dues
    ({**DUE, "first_operator_response_at": 3701, "sla_resolved_at": 5000}, True),  # answered late
    # A staff message after the escalation, before any claim, is the operator's first response (not only
    # the claim): in time here, and nothing else is late.
    ({**DUE, "first_operator_response_at": 1000, "first_claimed_at": 9000, "sla_resolved_at": 9500}, False),
    ({**DUE, "first_operator_response_at": 600, "sla_resolved_at": 90_000}, True),  # resolved late
    ({**DUE, "first_operator_response_at": 600}, True),  # unresolved past the due, on NOW
    ({**DUE}, True),  # nobody answered, on NOW
    ({**DUE, "closed_at": 500}, False),  # withdrawn before any due: the clocks stopped in time
    ({**DUE, "closed_at": 4000}, True),  # closed after the response due, unanswered
]


def test_the_queue_and_the_reports_agree_on_every_sla_case(db_url: str) -> None:
    async def work(session: AsyncSession) -> list[tuple[bool, bool]]:
        shop = report_shop(session)
        await session.flush()
        orders = [report_order(session, shop, OPENED) for _ in CASES]
        await session.flush()
        for order_id, (moments, _) in zip(orders, CASES, strict=True):
            report_dispute(session, order_id, shop, OPENED, status="escalated", **moments)
        await session.flush()
        rows = (
            await session.execute(select(Dispute, queue.sla_breached_sql(NOW)).where(Dispute.seller_id == shop))
        ).all()
        by_order = {d.order_id: (queue.sla_breached(d, NOW), bool(in_sql)) for d, in_sql in rows}
        return [by_order[o] for o in orders]

    expected = [(breached, breached) for _, breached in CASES]
    assert run(db_url, work) == expected
