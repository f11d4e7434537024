"""KPIs and seller scorecards over HTTP (thin: scoping and figures are in metrics.py, CSV in export.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import utcnow
from app.permissions.guards import allow
from app.reports import export, metrics
from app.reports.schemas import KpiReport, SellerMetrics
from app.settings import Settings

From = Annotated[
    datetime | None, QueryParameter(name="from", description="start of the window, included (default: to - 30 days)")
]
To = Annotated[datetime | None, QueryParameter(description="end of the window, excluded (default: now)")]


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["reports"]

    @get("/kpis", guards=[allow("report", "read")], summary="After-sales KPIs of a window, for one shop or all")
    async def kpis(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        from_: From = None,
        to: To = None,
        seller_id: Annotated[str | None, QueryParameter()] = None,
        format: Annotated[
            Literal["json", "csv"], QueryParameter(description="csv: one row per dispute, streamed")
        ] = "json",
    ) -> Response[KpiReport] | Stream:
        now = utcnow()
        window = metrics.window_of(from_, to, now=now, seller_id=metrics.kpi_scope(request.user, seller_id))
        if format == "csv":
            return Stream(
                export.stream_csv(request.app.state.engine, window=window, now=now),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="disputes.csv"'},
            )
        reader = request.app.state.reports_reader
        return Response(await metrics.kpi_report(db_session, window=window, now=now, reader=reader))


class SellerMetricsController(Controller):
    path = "/v1/sellers/{seller_id:str}/metrics"
    tags = ["reports"]

    @get("/", guards=[allow("report", "read")], summary="A shop's scorecard: its KPIs, rates and alerts")
    async def get_metrics(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        seller_id: FromPath[str],
        from_: From = None,
        to: To = None,
    ) -> SellerMetrics:
        now = utcnow()
        await metrics.require_shop(db_session, request.user, seller_id)
        window = metrics.window_of(from_, to, now=now, seller_id=seller_id)
        reader = request.app.state.reports_reader
        return await metrics.seller_metrics(db_session, window=window, now=now, settings=settings, reader=reader)
