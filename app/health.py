from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import ensure_schema_current
from app.errors import ServiceUnavailable


class HealthController(Controller):
    tags = ["operations"]

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: database reachable and migrations current")
    async def ready(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        engine: AsyncEngine = request.app.state.engine
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready", with the reason for the operator
            raise ServiceUnavailable(
                f"database unreachable: {type(exc).__name__}", code="database.unreachable"
            ) from None
        await ensure_schema_current(engine)
        return {"status": "ready"}
