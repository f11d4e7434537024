"""The KPI population as CSV: one row per dispute opened in the window (its timings and outcome), for
the marketplace's own BI. Streamed from a server-side cursor; no conversation text, no CSAT comment."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.disputes.models import Dispute
from app.reports import kpis
from app.reports.kpis import Window

BATCH = 1_000


def rows_of(window: Window, now: datetime) -> Select[*tuple[Any, ...]]:
    return (
        select(
            Dispute.id.label("dispute_id"),
            Dispute.order_id,
            Dispute.seller_id,
            Dispute.reason,
            Dispute.priority,
            Dispute.status,
            Dispute.outcome,
            Dispute.currency,
            Dispute.amount,
            Dispute.created_at,
            Dispute.first_response_at,
            kpis.FIRST_RESPONSE_SECONDS.label("first_response_seconds"),
            Dispute.first_escalated_at,
            Dispute.first_operator_response_at,
            Dispute.first_response_due,
            Dispute.resolution_due,
            kpis.sla_breached(now).label("sla_breached"),
            Dispute.first_resolved_at,
            kpis.RESOLUTION_SECONDS.label("resolution_seconds"),
            Dispute.reopened,
            Dispute.appealed,
            Dispute.closed_at,
            Dispute.at_fault,
            Dispute.return_required,
            Dispute.csat_score,
        )
        .where(kpis.opened_in(window))
        .order_by(Dispute.created_at, Dispute.id)
    )


COLUMNS = [c.name for c in rows_of(Window(datetime.min, datetime.max), datetime.min).selected_columns]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return round(value, 3)
    return value


async def stream_csv(engine: AsyncEngine, *, window: Window, now: datetime) -> AsyncIterator[bytes]:
    """The header, then the rows in batches, read through a cursor that holds one batch at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue().encode()
    async with engine.connect() as connection:
        result = await connection.stream(rows_of(window, now).execution_options(yield_per=BATCH))
        async for partition in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([_cell(v) for v in row] for row in partition)
            yield buffer.getvalue().encode()
