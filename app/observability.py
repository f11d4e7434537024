"""Structured JSON logs with a request id, and the access log written by a small ASGI middleware.

No log line may carry a secret: a bearer token, a signature, a promo code, a webhook secret. Our own lines
never include headers, bodies or query strings. Libraries are kept from dumping the wire (uvicorn's
websockets protocol logs request headers and every frame at DEBUG, aiosqlite every statement with its
parameters): those loggers stay at INFO or above whatever ``SAV_LOG_LEVEL`` says. And, whatever a library
still writes, the handler's formatter redacts what has the shape of a secret (:func:`redact`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
access_log = logging.getLogger("sav.access")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

# Loggers that dump traffic or statements below INFO (headers, frames, SQL parameters).
WIRE_LOGGERS = ("uvicorn.error", "websockets", "aiosqlite", "psycopg", "httpcore", "hpack", "stripe")

# What has the shape of a secret, wherever it appears in a line (URLs in uvicorn's or httpx's lines,
# exception texts): the value is replaced, the name kept so the line still says what was there.
_SECRET_PARAMS = "token|access_token|id_token|refresh_token|jwt|api_key|apikey|key|secret|signature|sig|password|code"  # noqa: S105 - names, not values
_REDACTIONS = [
    (re.compile(rf"([?&;](?:{_SECRET_PARAMS})=)[^&;\s\"'#\\]*", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"\bey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"\b(Bearer\s+)[^\s\"',\\]+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"\b(v[01]=)[0-9a-fA-F]{16,}"), r"\1[redacted]"),  # Stripe-Signature, Sav-Signature
    (re.compile(r"\b(?:whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9_]+"), "[redacted-key]"),
    (re.compile(r"(/promo-codes/)[^/?\s\"'\\]+"), r"\1[redacted]"),  # a promo code is a bearer secret
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._json(record))

    def _json(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if request_id := request_id_var.get():
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str, *, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Every line goes through our handler (and its redaction), also when uvicorn was started with its own
    # logging config: its loggers then have handlers of their own and do not propagate.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in WIRE_LOGGERS:
        wire = logging.getLogger(name)
        wire.setLevel(max(root.level, logging.INFO))
    # Our own access log (sav.access) covers HTTP requests, without query strings.
    logging.getLogger("uvicorn.access").disabled = True


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Take ``X-Request-ID`` from the caller (or make one), echo it, and log one line per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:128]
                break
        request_id = incoming or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": scope.get("method", ""),
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)

    return middleware
