"""Signatures of outbound webhooks: ``Sav-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC covers ``f"{t}.{body}"`` with the endpoint's secret, so a receiver can check both who sent the
body and that it is fresh (a replayed old request fails the timestamp tolerance).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Sav-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """The receiver's check: the header parses, the timestamp is recent and one v1 signature matches."""
    try:
        parts = [item.split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in parts if key.strip() == "t"))
        signatures = [value for key, value in parts if key.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
