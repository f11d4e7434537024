"""Webhook delivery, in emission order, signed like Stripe (``Stripe-Signature: t=<ts>,v1=<hmac-sha256>``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("devtools.stripe_server.webhooks")


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload`` (what ``stripe.Webhook.construct_event`` verifies)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class Delivery:
    event_id: str
    type: str
    url: str
    attempts: int = 0
    status: int | None = None  # the receiver's HTTP status, None while queued or after a network error
    error: str | None = None
    delivered: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event_id,
            "type": self.type,
            "url": self.url,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "delivered": self.delivered,
        }


@dataclass
class WebhookSender:
    url: str | None = None
    secret: str = "whsec_local"
    timeout: float = 5.0
    deliveries: list[Delivery] = field(default_factory=list)
    _queue: asyncio.Queue[tuple[dict[str, Any], Delivery, str]] | None = None
    _worker: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for the configured URL (with the secret current now); no URL, no delivery."""
        if not self.url:
            return
        delivery = Delivery(event_id=event["id"], type=event["type"], url=self.url)
        self.deliveries.append(delivery)
        self._start()
        assert self._queue is not None
        self._queue.put_nowait((event, delivery, self.secret))

    def _start(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            event, delivery, secret = await self._queue.get()
            try:
                await self._deliver(event, delivery, secret)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any], delivery: Delivery, secret: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        payload = json.dumps(event, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(payload, secret),
        }
        delivery.attempts += 1
        try:
            response = await self._client.post(delivery.url, content=payload, headers=headers)
        except httpx.HTTPError as exc:  # a receiver that is down is not our problem
            delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s %s to %s failed: %s", event["type"], event["id"], delivery.url, delivery.error)
            return
        delivery.status, delivery.error = response.status_code, None
        delivery.delivered = 200 <= response.status_code < 300
        if not delivery.delivered:
            log.warning("webhook %s %s answered %s", event["type"], event["id"], response.status_code)

    def redeliver(self, event: dict[str, Any]) -> None:
        self.enqueue(event)

    async def drain(self) -> None:
        """Wait until every queued event has been POSTed (or has failed)."""
        if self._queue is not None:
            await self._queue.join()

    def reset(self) -> None:
        self.deliveries.clear()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._client is not None:
            await self._client.aclose()
