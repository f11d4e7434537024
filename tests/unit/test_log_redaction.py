"""The last line of defence of the logs: whatever a library writes, token-shaped values and secret query
parameters are redacted by the handler's formatter (the end-to-end check is tests/e2e/test_secrets_in_logs.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

from app.observability import JsonFormatter, redact

JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"


def test_secret_query_parameters_and_token_shapes_are_redacted() -> None:
    line = (
        f'127.0.0.1:5 - "WebSocket /v1/ws?after_event_id=3&token={JWT_LIKE}" [accepted] '
        f"Bearer {JWT_LIKE} Stripe-Signature: t=1,v1={'ab' * 32} whsec_abcDEF123 sk_live_abc123"
    )
    cleaned = redact(line)
    assert "after_event_id=3" in cleaned
    for secret in (JWT_LIKE, "ab" * 32, "whsec_abcDEF123", "sk_live_abc123"):
        assert secret not in cleaned
    assert redact("/v1/ws?access_token=abc&x=1") == "/v1/ws?access_token=[redacted]&x=1"
    assert redact("GET /v1/orders/ord-1?limit=5") == "GET /v1/orders/ord-1?limit=5"


def test_the_formatter_redacts_messages_arguments_and_exceptions() -> None:
    try:
        raise ValueError(f"bad token {JWT_LIKE}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "path %s", (f"/v1/ws?token={JWT_LIKE}",), None)
        record.exc_info = sys.exc_info()
    out = JsonFormatter().format(record)
    assert JWT_LIKE not in out
    assert json.loads(out)["msg"] == "path /v1/ws?token=[redacted]"  # still one valid JSON object


def test_database_errors_do_not_quote_statement_parameters(tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from app.db import create_engine

    async def run() -> str:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (secret TEXT PRIMARY KEY)"))
                await conn.execute(text("INSERT INTO t VALUES (:s)"), {"s": "promo-SECRET-42"})
                try:
                    await conn.execute(text("INSERT INTO t VALUES (:s)"), {"s": "promo-SECRET-42"})
                except IntegrityError as exc:
                    return str(exc)
            raise AssertionError("no IntegrityError")
        finally:
            await engine.dispose()

    message = asyncio.run(run())
    assert "UNIQUE" in message
    assert "promo-SECRET-42" not in message
