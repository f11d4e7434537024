"""Outbound webhooks: endpoints, the outbox, and delivery by the worker.

A transition calls :func:`enqueue` inside its own transaction: one ``pending`` delivery per subscribed
endpoint. Only committed rows exist, so nothing is ever sent for a rolled-back change. The worker then
delivers them as a leased outbox (app/outbox.py: claimed with a lease, never two workers at once, none
lost by a worker that dies): each POSTed, signed (app/webhooks/signing.py), then its attempt recorded;
2xx succeeded, otherwise retried with exponential backoff until 24 h after the event, then ``failed``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import outbox
from app.auth import Actor
from app.db import utcnow
from app.errors import NotFound, ValidationFailed
from app.paging import newest_first_key, next_cursor, older_than, window
from app.schemas import Page
from app.settings import Settings
from app.webhooks import destinations, signing
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import (
    EVENT_TYPES,
    AttemptRead,
    DeliveryRead,
    DeliveryStatus,
    EndpointCreate,
    EndpointCreated,
    EndpointRead,
)

RETRY_FOR = timedelta(hours=24)
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
BATCH = 50


# --- endpoints ------------------------------------------------------------------------------------------


async def _check_url(url: str, settings: Settings) -> None:
    try:
        await destinations.check(
            url, allow_private=settings.webhooks_allow_private, https_only=settings.env == "production"
        )
    except destinations.UnsafeDestination as exc:
        raise ValidationFailed(f"url: {exc}", field="url", code=exc.code) from None


def _read(endpoint: WebhookEndpoint) -> EndpointRead:
    return EndpointRead(
        endpoint_id=endpoint.id,
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        description=endpoint.description,
        active=endpoint.active,
        created_at=endpoint.created_at,
    )


async def create_endpoint(
    session: AsyncSession, *, actor: Actor, data: EndpointCreate, settings: Settings
) -> EndpointCreated:
    await _check_url(data.url, settings)
    for index, event_type in enumerate(data.event_types):
        if event_type != "*" and event_type not in EVENT_TYPES:
            raise ValidationFailed(
                f"unknown event type {event_type!r}; known: *, {', '.join(EVENT_TYPES)}",
                field=f"event_types[{index}]",
            )
    endpoint = WebhookEndpoint(
        id=f"whe_{uuid.uuid4().hex}",
        url=data.url,
        event_types=sorted(set(data.event_types)),
        secret=data.secret or secrets.token_urlsafe(32),
        description=data.description,
        active=True,
        created_by=actor.id,
        created_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    return EndpointCreated(**msgspec.structs.asdict(_read(endpoint)), secret=endpoint.secret)


async def _endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} does not exist")
    return endpoint


async def get_endpoint(session: AsyncSession, *, endpoint_id: str) -> EndpointRead:
    return _read(await _endpoint(session, endpoint_id))


async def list_endpoints(session: AsyncSession, *, limit: int, cursor: str | None) -> Page[EndpointRead]:
    query = select(WebhookEndpoint)
    if cursor is not None:
        query = query.where(older_than(cursor, WebhookEndpoint.created_at, WebhookEndpoint.id))
    order = (WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
    rows, more = window((await session.scalars(query.order_by(*order).limit(limit + 1))).all(), limit)
    return Page(items=[_read(e) for e in rows], next_cursor=next_cursor(rows, more, newest_first_key))


async def deactivate(session: AsyncSession, *, endpoint_id: str) -> None:
    """Stop sending to an endpoint: it stays listed (with its log), its pending deliveries end failed."""
    endpoint = await _endpoint(session, endpoint_id)
    endpoint.active = False
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.FAILED, last_error="endpoint deactivated")
    )


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: str, limit: int, cursor: str | None
) -> Page[DeliveryRead]:
    await _endpoint(session, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if cursor is not None:
        query = query.where(older_than(cursor, WebhookDelivery.created_at, WebhookDelivery.id))
    order = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    rows, more = window((await session.scalars(query.order_by(*order).limit(limit + 1))).all(), limit)
    attempts: dict[str, list[AttemptRead]] = {d.id: [] for d in rows}
    if rows:
        found = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for a in found.all():
            attempts[a.delivery_id].append(
                AttemptRead(
                    number=a.number, at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms
                )
            )
    items = [
        DeliveryRead(
            delivery_id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=attempts[d.id],
            next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.PENDING else None,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            payload=d.payload,
        )
        for d in rows
    ]
    return Page(items=items, next_cursor=next_cursor(rows, more, newest_first_key))


# --- the outbox -----------------------------------------------------------------------------------------


ENDPOINTS_CACHE = "sav.webhook_endpoints"
ENDPOINTS_CACHE_TXN = "sav.webhook_endpoints.transaction"


async def enqueue(
    session: AsyncSession,
    *,
    event_type: str,
    data: dict[str, Any],
    event_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """One pending delivery per active endpoint subscribed to ``event_type``, in the caller's transaction.

    The endpoints are read once per transaction (a worker announcing fifty refund outcomes asks once)."""
    endpoints: list[tuple[str, list[str]]] | None = session.info.get(ENDPOINTS_CACHE)
    if endpoints is None or session.info.get(ENDPOINTS_CACHE_TXN) is not session.get_transaction():
        rows = await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(WebhookEndpoint.active)
        )
        endpoints = [(endpoint_id, list(types)) for endpoint_id, types in rows.all()]
        session.info[ENDPOINTS_CACHE] = endpoints
        session.info[ENDPOINTS_CACHE_TXN] = session.get_transaction()
    wanted = [endpoint_id for endpoint_id, types in endpoints if "*" in types or event_type in types]
    if not wanted:
        return 0
    now = now or utcnow()
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    body = msgspec.json.encode({"id": event_id, "type": event_type, "created_at": now, "data": data}).decode()
    session.add_all(
        [
            WebhookDelivery(
                id=f"whd_{uuid.uuid4().hex}",
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                payload=body,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint_id in wanted
        ]
    )
    return len(wanted)


# --- delivery -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: str
    attempt: int
    event_id: str
    event_type: str
    payload: str
    url: str
    secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff(attempt: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 1 h, with up to 10 % jitter so retries do not stampede."""
    return outbox.backoff(attempt, first_seconds=FIRST_RETRY_SECONDS, max_seconds=MAX_RETRY_SECONDS, jitter=0.1)


async def claim_due(sessions: async_sessionmaker[AsyncSession], *, now: datetime, batch: int = BATCH) -> list[Claimed]:
    def take(row: Row[*tuple[Any, ...]]) -> Claimed:
        delivery, url, secret = row
        return Claimed(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            url=url,
            secret=secret,
            created_at=delivery.created_at,
        )

    query = select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret).join(
        WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id
    )
    return await outbox.claim(sessions, query, table=WebhookDelivery, now=now, batch=batch, lease=LEASE, take=take)


@dataclass(frozen=True, slots=True)
class Policy:
    """Where deliveries may go (app/webhooks/destinations.py), from the settings."""

    allow_private: bool = False
    https_only: bool = False
    resolver: destinations.Resolver = destinations.resolve

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(allow_private=settings.webhooks_allow_private, https_only=settings.env == "production")


async def send(client: httpx.AsyncClient, item: Claimed, policy: Policy = Policy()) -> Outcome:
    started = time.perf_counter()
    try:
        # Checked again now: the name may resolve elsewhere than when the endpoint was registered.
        target = await destinations.check(
            item.url, allow_private=policy.allow_private, https_only=policy.https_only, resolver=policy.resolver
        )
    except destinations.UnsafeDestination as exc:
        return Outcome(status_code=None, error=f"refused: {exc}"[:500], duration_ms=0)
    body = item.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "sav-webhooks/1",
        signing.HEADER: signing.sign(item.secret, int(time.time()), body),
        "Sav-Event-Id": item.event_id,
        "Sav-Event-Type": item.event_type,
        "Sav-Delivery-Attempt": str(item.attempt),
    }
    extensions = {}
    if target.address is not None:
        # Connect to the address that was checked, not to a second lookup's answer; TLS still verifies
        # the certificate for the host name.
        headers["Host"] = target.host_header
        extensions["sni_hostname"] = target.url.hostname or ""
    try:
        response = await client.post(target.connect_url, content=body, headers=headers, extensions=extensions)
        status, error = response.status_code, None if response.is_success else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:500]
    return Outcome(status_code=status, error=error, duration_ms=int((time.perf_counter() - started) * 1000))


async def record(
    sessions: async_sessionmaker[AsyncSession], answered: list[tuple[Claimed, Outcome]], *, now: datetime
) -> None:
    """Record a pass's attempts and outcomes (together, or one by one if that fails: app/outbox.py)."""

    async def apply(session: AsyncSession, batch: list[tuple[Claimed, Outcome]]) -> list[None]:
        for item, outcome in batch:
            await _record_one(session, item, outcome, now)
        return [None] * len(batch)

    await outbox.record_outcomes(
        sessions, answered, apply, unrecorded=None, what=lambda pair: f"webhook delivery {pair[0].delivery_id}"
    )


async def _record_one(session: AsyncSession, item: Claimed, outcome: Outcome, now: datetime) -> None:
    session.add(
        WebhookAttempt(
            delivery_id=item.delivery_id,
            number=item.attempt,
            at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    retry_at = now + backoff(item.attempt)
    if outcome.ok:
        values: dict[str, Any] = {"status": DeliveryStatus.SUCCEEDED, "delivered_at": now, "last_error": None}
    elif retry_at - item.created_at > RETRY_FOR:
        values = {"status": DeliveryStatus.FAILED}
    else:
        values = {"next_attempt_at": retry_at}
    values |= {"last_status_code": outcome.status_code, "last_error": outcome.error}
    # Only if the delivery is still ours (same attempt): a lease that ran out was taken by another worker.
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == item.delivery_id, WebhookDelivery.attempts == item.attempt)
        .values(**values)
    )


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
    batch: int = BATCH,
    policy: Policy = Policy(),
) -> int:
    """One worker pass: claim, send in parallel, record. Returns how many deliveries were attempted.

    ``policy`` says where deliveries may go; the default refuses every non-public address."""
    claimed = await claim_due(sessions, now=now or utcnow(), batch=batch)
    if not claimed:
        return 0
    own = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)

    async def post(item: Claimed) -> Outcome:
        return await send(http, item, policy)

    async def record_all(answered: list[tuple[Claimed, Outcome]]) -> None:
        await record(sessions, answered, now=now or utcnow())

    try:
        return await outbox.work(claimed, post, record_all)
    finally:
        if own:
            await http.aclose()
