"""``GET /metrics`` for Prometheus, behind a scrape token.

Route volumes are business data (how many disputes, refunds, which shops are busy), so the endpoint is
not public: scrapers send ``Authorization: Bearer <SAV_METRICS_TOKEN>``, compared in constant time. With
no token configured the endpoint does not exist (404): metrics are off rather than open.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusController

from app.errors import NotFound, Unauthenticated


def require_scrape_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected: str = connection.app.state.settings.metrics_token
    if not expected:
        raise NotFound("No resource at this address")  # metrics are off (no SAV_METRICS_TOKEN)
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthenticated("metrics need Authorization: Bearer <SAV_METRICS_TOKEN>", code="auth.invalid_token")


class MetricsController(PrometheusController):
    guards = [require_scrape_token]
