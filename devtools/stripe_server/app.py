"""The ASGI application: Stripe's ``/v1`` wire format (auth, form params, idempotency) plus ``/_control``.

A plain ASGI callable (no framework) so that every byte of the answer is Stripe's: error bodies, the
``Request-Id`` / ``Idempotent-Replayed`` / ``Original-Request`` headers, and the "apply, then drop the
connection" fault, which needs the raw transport (see ``__main__``, which hands it over in the scope).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.stripe_server.control import Fault, control_action
from devtools.stripe_server.errors import StripeError, invalid
from devtools.stripe_server.forms import fingerprint, parse_form
from devtools.stripe_server.params import Context, check_params, new_id
from devtools.stripe_server.routes import match
from devtools.stripe_server.state import API_VERSION
from devtools.stripe_server.store import Store
from devtools.stripe_server.webhooks import WebhookSender

log = logging.getLogger("devtools.stripe_server")

TRANSPORT_KEY = "devtools.stripe_server.transport"
IDEMPOTENCY_TTL = 24 * 3600
API_KEY = re.compile(r"^(sk|rk)_test_[A-Za-z0-9_]+$")
AFTER_APPLY = ("drop_after_apply", "error_500_after_apply")  # faults that change the answer, not the call

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[..., dict[str, Any]]


@dataclass
class Stored:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    created: float


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class StripeServer:
    """One Stripe test account in memory. ``await server(scope, receive, send)`` is the ASGI entry point."""

    def __init__(self, *, webhook_url: str | None = None, webhook_secret: str | None = None, latency_ms: int = 0):
        self.store = Store()
        self.lock = asyncio.Lock()  # every read and change of the store
        self.webhooks = WebhookSender(url=webhook_url or None, secret=webhook_secret or "whsec_local")
        self.store.webhooks_enabled = self.webhooks.enabled
        self.latency_ms = latency_ms
        self.path_latency: dict[str, int] = {}
        self.faults: list[Fault] = []
        self.idempotency: dict[tuple[str, str, str], Stored] = {}
        self.key_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.holds: dict[str, int] = {}  # request id -> ms to hold its (applied) answer

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = new_id("req")[:18]
        drop = False
        fail_after = False
        try:
            if path.startswith("/_control/"):
                answer = await self._control(scope["method"], path, scope["query_string"].decode(), body, headers)
            else:
                answer, after = await self._api(
                    scope["method"], path, scope["query_string"].decode(), body, headers, request_id
                )
                drop, fail_after = after == "drop_after_apply", after == "error_500_after_apply"
        except StripeError as exc:
            answer = Answer(exc.status, _json(exc.body(request_id)), exc.headers)
        except Exception:
            log.exception("stripe_server: %s %s failed", scope["method"], path)
            answer = Answer(500, _json({"error": {"type": "api_error", "message": "An unknown error occurred"}}))
        if drop:
            await self._drop(scope, send)
            return
        if fail_after:  # applied and stored for the key; the caller sees a 500 (a proxy or Stripe's own edge)
            error = StripeError(500, "An unknown error occurred", type="api_error", stored=False)
            answer = Answer(500, _json(error.body(request_id)))
        hold_ms = self.holds.pop(request_id, 0)
        if hold_ms:  # applied and stored for the key, outside every lock: a retry meanwhile replays it
            await asyncio.sleep(hold_ms / 1000)
        response_headers = {
            "content-type": "application/json",
            "request-id": request_id,
            "stripe-version": headers.get("stripe-version", API_VERSION),
            "cache-control": "no-cache, no-store",
            "content-length": str(len(answer.body)),
            **answer.headers,
        }
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in response_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _drop(self, scope: Scope, send: Send) -> None:
        """Close the connection without a byte of answer (the change is already applied and stored)."""
        transport = scope.get(TRANSPORT_KEY)
        if transport is not None:
            transport.abort()
            for _ in range(3):  # let the server see the disconnect before we return
                await asyncio.sleep(0)
            return
        # No transport handed over (another server): promise a body and never send it; the server then
        # closes the connection and the client sees an incomplete answer, which it also retries.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})

    # /v1

    async def _api(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str], request_id: str
    ) -> tuple[Answer, str | None]:
        """The answer, and what the fault taken (if any) does to it after applying: ``drop_after_apply``,
        ``error_500_after_apply`` or None."""
        delay = self.path_latency.get(path, self.latency_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        fault = self._take_fault(method, path)
        api_key = _authenticate(headers)
        if fault is not None and fault.mode == "error_500":
            raise StripeError(500, "An unknown error occurred", type="api_error", stored=False)
        route, path_args = match(method, path)
        account = headers.get("stripe-account") or None
        if account is not None and not route.connect:
            raise invalid(
                "This local server supports the Stripe-Account header on /v1/balance, /v1/balance_transactions and "
                "/v1/payouts only.",
                param="Stripe-Account",
            )
        params = parse_form(body.decode() if method == "POST" else query)
        key = headers.get("idempotency-key") if method == "POST" else None
        ctx = Context(request_id=request_id, idempotency_key=key, stripe_account=account)
        handler: Handler = getattr(self.store, route.handler)
        call = (handler, route.params)
        after = fault.mode if fault is not None and fault.mode in AFTER_APPLY else None
        if fault is not None and fault.mode == "hold_after_apply":
            self.holds[request_id] = fault.hold_ms
        if key is None:
            status, payload, _ = await self._execute(call, ctx, params, path_args)
            return Answer(status, payload), after
        if len(key) > 255:
            raise invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
        scope_key = (api_key, account or "", key)
        lock = self.key_locks.setdefault(scope_key, asyncio.Lock())
        async with lock:  # one request per key at a time: a concurrent duplicate waits, then replays
            stored = self.idempotency.get(scope_key)
            if stored is not None and self.store.now() - stored.created > IDEMPOTENCY_TTL:
                del self.idempotency[scope_key]
                stored = None
            wanted = fingerprint(method, path, params)
            if stored is not None:
                if stored.fingerprint != wanted:
                    raise StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were first used "
                        f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                        type="idempotency_error",
                        stored=False,
                    )
                replay = {"idempotent-replayed": "true", "original-request": stored.request_id, "idempotency-key": key}
                return Answer(stored.status, stored.body, replay), after
            status, payload, keep = await self._execute(call, ctx, params, path_args)
            if keep:
                self.idempotency[scope_key] = Stored(wanted, status, payload, request_id, self.store.now())
            return Answer(status, payload, {"idempotency-key": key}), after

    async def _execute(
        self, call: tuple[Handler, tuple[str, ...]], ctx: Context, params: dict[str, Any], path_args: tuple[str, ...]
    ) -> tuple[int, bytes, bool]:
        """Run one store method under the lock: (status, body, whether Stripe would save it for the key)."""
        handler, accepted = call
        try:
            async with self.lock:
                try:
                    ctx.expand = check_params(params, accepted)
                    result = handler(ctx, params, *path_args)
                finally:
                    self._flush_events()
        except StripeError as exc:
            return exc.status, _json(exc.body(ctx.request_id)), exc.stored
        return 200, _json(result), True

    def _flush_events(self) -> None:
        for event in self.store.new_events:
            self.webhooks.enqueue(event)
        self.store.new_events.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    # /_control

    async def _control(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Answer:
        params: dict[str, Any] = parse_form(query)
        if body:
            if headers.get("content-type", "").startswith("application/json"):
                params.update(_as_form(json.loads(body)))
            else:
                params.update(parse_form(body.decode()))
        name = path.removeprefix("/_control/").strip("/")
        ctx = Context(request_id=new_id("req")[:18])
        async with self.lock:
            try:
                result = await self._control_action(method, name, params, ctx)
            finally:
                self._flush_events()
        if name == "webhooks/drain":  # outside the lock: delivery does not need it
            await self.webhooks.drain()
            result = {"deliveries": [d.as_dict() for d in self.webhooks.deliveries]}
        return Answer(200, _json(result))

    async def _control_action(self, method: str, name: str, params: dict[str, Any], ctx: Context) -> Any:
        return control_action(self, method, name, params, ctx)


def _authenticate(headers: dict[str, str]) -> str:
    raw = headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = value.strip()
    elif scheme.lower() == "basic":  # curl -u sk_test_...:
        try:
            key = base64.b64decode(value).decode().partition(":")[0]
        except ValueError:
            key = ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using "
            "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
            "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
            stored=False,
            headers={"www-authenticate": 'Bearer realm="Stripe"'},
        )
    if not API_KEY.match(key):
        raise StripeError(
            401,
            f"Invalid API Key provided: {key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}",
            stored=False,
            headers={"www-authenticate": 'Bearer realm="Stripe"'},
        )
    return key


def _as_form(value: Any) -> Any:
    """JSON control params read like form params: every scalar a string (``true``, ``12``), None kept."""
    if isinstance(value, dict):
        return {k: _as_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_form(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if value is None or isinstance(value, str) else str(value)


def _json(value: Any) -> bytes:
    # Compact: Stripe indents its answers, but ``indent`` makes ``json`` fall back from its C encoder to
    # pure Python, which was a sixth of this server's time per request (bench/release.py).
    return json.dumps(value, separators=(",", ":")).encode()
