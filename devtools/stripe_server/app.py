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

from devtools.stripe_server.errors import StripeError, invalid, unrecognized_url
from devtools.stripe_server.forms import fingerprint, parse_form
from devtools.stripe_server.state import API_VERSION, Context, Store, get_currency, get_int, get_str, new_id
from devtools.stripe_server.webhooks import WebhookSender

log = logging.getLogger("devtools.stripe_server")

TRANSPORT_KEY = "devtools.stripe_server.transport"
IDEMPOTENCY_TTL = 24 * 3600
API_KEY = re.compile(r"^(sk|rk)_test_[A-Za-z0-9_]+$")
ID = r"(?P<{}>[A-Za-z0-9_]+)"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[..., dict[str, Any]]


def _route(method: str, pattern: str, name: str) -> tuple[str, re.Pattern[str], str]:
    regex = re.sub(r"\{(\w+)\}", lambda m: ID.format(m.group(1)), pattern)
    return method, re.compile(f"^{regex}$"), name


ROUTES = [
    _route("POST", "/v1/charges", "create_charge"),
    _route("GET", "/v1/charges/{charge_id}", "retrieve_charge"),
    _route("GET", "/v1/payment_intents/{pi_id}", "retrieve_payment_intent"),
    _route("POST", "/v1/refunds", "create_refund"),
    _route("GET", "/v1/refunds", "list_refunds"),
    _route("GET", "/v1/refunds/{refund_id}", "retrieve_refund"),
    _route("POST", "/v1/refunds/{refund_id}", "update_refund"),
    _route("POST", "/v1/transfers", "create_transfer"),
    _route("GET", "/v1/transfers", "list_transfers"),
    _route("GET", "/v1/transfers/{transfer_id}", "retrieve_transfer"),
    _route("POST", "/v1/transfers/{transfer_id}/reversals", "create_reversal"),
    _route("GET", "/v1/transfers/{transfer_id}/reversals", "list_reversals"),
    _route("GET", "/v1/transfers/{transfer_id}/reversals/{reversal_id}", "retrieve_reversal"),
    _route("GET", "/v1/balance", "balance"),
    _route("GET", "/v1/balance_transactions", "list_balance_transactions"),
    _route("GET", "/v1/balance_transactions/{txn_id}", "retrieve_balance_transaction"),
    _route("GET", "/v1/events", "list_events"),
    _route("GET", "/v1/events/{event_id}", "retrieve_event"),
]
CONNECT_ROUTES = {"balance", "list_balance_transactions", "retrieve_balance_transaction"}


@dataclass
class Fault:
    path: str  # exact, or a prefix when it ends with "*"
    method: str
    # "error_500" (before applying), "drop_after_apply" (apply, then close the connection unanswered) or
    # "hold_after_apply" (apply, then keep the answer ``hold_ms``: time to kill the client mid-call)
    mode: str
    remaining: int
    hold_ms: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or self.method not in {"*", method}:
            return False
        return path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "mode": self.mode,
            "remaining": self.remaining,
            "hold_ms": self.hold_ms,
        }


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


FAULT_MODES = {
    "error_500": "error_500",
    "500": "error_500",
    "drop": "drop_after_apply",
    "drop_after_apply": "drop_after_apply",
    "hold": "hold_after_apply",
    "hold_after_apply": "hold_after_apply",
}


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
        try:
            if path.startswith("/_control/"):
                answer = await self._control(scope["method"], path, scope["query_string"].decode(), body, headers)
            else:
                answer, drop = await self._api(
                    scope["method"], path, scope["query_string"].decode(), body, headers, request_id
                )
        except StripeError as exc:
            answer = Answer(exc.status, _json(exc.body(request_id)), exc.headers)
        except Exception:
            log.exception("stripe_server: %s %s failed", scope["method"], path)
            answer = Answer(500, _json({"error": {"type": "api_error", "message": "An unknown error occurred"}}))
        if drop:
            await self._drop(scope, send)
            return
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
    ) -> tuple[Answer, bool]:
        delay = self.path_latency.get(path, self.latency_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        fault = self._take_fault(method, path)
        api_key = _authenticate(headers)
        if fault is not None and fault.mode == "error_500":
            raise StripeError(500, "An unknown error occurred", type="api_error", stored=False)
        handler_name, path_args = _match(method, path)
        account = headers.get("stripe-account") or None
        if account is not None and handler_name not in CONNECT_ROUTES:
            raise invalid(
                "This local server supports the Stripe-Account header on /v1/balance and /v1/balance_transactions "
                "only.",
                param="Stripe-Account",
            )
        params = parse_form(body.decode() if method == "POST" else query)
        key = headers.get("idempotency-key") if method == "POST" else None
        ctx = Context(request_id=request_id, idempotency_key=key, stripe_account=account)
        handler: Handler = getattr(self.store, handler_name)
        drop = fault is not None and fault.mode == "drop_after_apply"
        if fault is not None and fault.mode == "hold_after_apply":
            self.holds[request_id] = fault.hold_ms
        if key is None:
            status, payload, _ = await self._execute(handler, ctx, params, path_args)
            return Answer(status, payload), drop
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
                return Answer(stored.status, stored.body, replay), drop
            status, payload, keep = await self._execute(handler, ctx, params, path_args)
            if keep:
                self.idempotency[scope_key] = Stored(wanted, status, payload, request_id, self.store.now())
            return Answer(status, payload, {"idempotency-key": key}), drop

    async def _execute(
        self, handler: Handler, ctx: Context, params: dict[str, Any], path_args: dict[str, str]
    ) -> tuple[int, bytes, bool]:
        """Run one store method under the lock: (status, body, whether Stripe would save it for the key)."""
        try:
            async with self.lock:
                try:
                    result = handler(ctx, params, **path_args)
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
                loaded = json.loads(body)
                params.update({k: v if isinstance(v, dict | str) or v is None else str(v) for k, v in loaded.items()})
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

    async def _control_action(self, method: str, name: str, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        store = self.store
        if name == "health":
            return {"ok": True}
        if name == "reset" and method == "POST":
            store.reset()
            store.webhooks_enabled = self.webhooks.enabled
            self.faults.clear()
            self.idempotency.clear()
            self.key_locks.clear()
            self.latency_ms, self.path_latency = 0, {}
            self.webhooks.reset()
            return {"reset": True}
        if name == "webhook":
            if method == "POST":
                if "url" in params:
                    self.webhooks.url = get_str(params, "url")
                if "secret" in params:
                    self.webhooks.secret = get_str(params, "secret", required=True) or ""
                store.webhooks_enabled = self.webhooks.enabled
            return {"url": self.webhooks.url, "secret": self.webhooks.secret}
        if name == "webhooks/drain" and method == "POST":
            return {}
        if name == "events" and method == "GET":
            return {
                "events": [store.render(e) for e in store.order.get("event", [])],
                "deliveries": [d.as_dict() for d in self.webhooks.deliveries],
            }
        if (m := re.fullmatch(r"events/(evt_\w+)/redeliver", name)) and method == "POST":
            event = store.render(store._get("event", m.group(1))["id"])
            self.webhooks.redeliver(event)
            return event
        if name == "faults":
            if method == "POST":
                mode = FAULT_MODES.get(get_str(params, "mode") or "error_500")
                if mode is None:
                    raise invalid("mode must be error_500, drop_after_apply or hold_after_apply", param="mode")
                fault_path = get_str(params, "path", required=True) or ""
                fault = Fault(
                    path=fault_path,
                    method=(get_str(params, "method") or "POST").upper(),
                    mode=mode,
                    remaining=get_int(params, "count") or 1,
                    hold_ms=get_int(params, "ms", minimum=0) or 0,
                )
                self.faults.append(fault)
            elif method == "DELETE":
                self.faults.clear()
            return {"faults": [f.as_dict() for f in self.faults if f.remaining > 0]}
        if name == "latency" and method == "POST":
            ms = get_int(params, "ms", minimum=0) or 0
            latency_path = get_str(params, "path")
            if latency_path:
                self.path_latency[latency_path] = ms
            else:
                self.latency_ms = ms
            return {"ms": self.latency_ms, "paths": self.path_latency}
        if name == "next_refund_pending" and method == "POST":
            charge_id = get_str(params, "charge", required=True) or ""
            store._get("charge", charge_id, param="charge")
            store.pending_next[charge_id] = store.pending_next.get(charge_id, 0) + (get_int(params, "count") or 1)
            return {"charge": charge_id, "pending_next": store.pending_next[charge_id]}
        if (m := re.fullmatch(r"refunds/(re_\w+)/settle", name)) and method == "POST":
            status = get_str(params, "status", required=True) or ""
            return store.settle_refund(ctx, m.group(1), status, get_str(params, "failure_reason"))
        if name == "charges" and method == "POST":  # seed a charge with a known id (a demo's orders)
            charge_id = get_str(params, "id", required=True) or ""
            if charge_id in store.objects:
                return store.render(charge_id)
            params.pop("id")
            return store.create_charge(ctx, params, charge_id=charge_id)
        if name == "dashboard_refund" and method == "POST":
            return store.create_refund(ctx, params)
        if name == "refunds_total" and method == "GET":
            return store.refunds_total(get_str(params, "charge", required=True) or "")
        if name == "clock" and method == "POST":
            store.clock_offset += get_int(params, "advance_seconds", minimum=0) or 0
            return {"now": store.now(), "offset": store.clock_offset}
        if name == "platform_balance" and method == "POST":
            amount = get_int(params, "amount", required=True) or 0
            return store.top_up(amount, get_currency(params) or "usd")
        raise unrecognized_url(method, f"/_control/{name}")


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


def _match(method: str, path: str) -> tuple[str, dict[str, str]]:
    for route_method, regex, name in ROUTES:
        m = regex.match(path)
        if m and route_method == method:
            return name, m.groupdict()
    raise unrecognized_url(method, path)


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()
