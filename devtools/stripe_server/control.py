"""Test controls under ``/_control/...`` (no auth, form or JSON params): what a test needs that Stripe's API
has no call for (reset, faults, the clock, seeding objects with chosen ids, settling refunds, totals).

Kept apart from ``/v1`` on purpose: nothing here is Stripe's, and the contract test never sees it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devtools.stripe_server.errors import invalid, unrecognized_url
from devtools.stripe_server.params import Context, check_params, get_bool, get_currency, get_int, get_str
from devtools.stripe_server.routes import ACCOUNT_PARAMS, CHARGE_PARAMS, REFUND_PARAMS

if TYPE_CHECKING:
    from devtools.stripe_server.app import StripeServer


@dataclass
class Fault:
    path: str  # exact, or a glob: "/v1/transfers/*/reversals", "/v1/transfers*"
    method: str
    # "error_500" (before applying), "error_500_after_apply" (apply and keep the answer for the key, then
    # answer 500), "drop_after_apply" (apply, then close the connection unanswered) or "hold_after_apply"
    # (apply, then keep the answer ``hold_ms``: time to kill the client mid-call)
    mode: str
    remaining: int
    hold_ms: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or self.method not in {"*", method}:
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "mode": self.mode,
            "remaining": self.remaining,
            "hold_ms": self.hold_ms,
        }


FAULT_MODES = {
    "error_500": "error_500",
    "500": "error_500",
    "error_500_after_apply": "error_500_after_apply",
    "500_after_apply": "error_500_after_apply",
    "drop": "drop_after_apply",
    "drop_after_apply": "drop_after_apply",
    "hold": "hold_after_apply",
    "hold_after_apply": "hold_after_apply",
}


def control_action(server: StripeServer, method: str, name: str, params: dict[str, Any], ctx: Context) -> Any:
    store = server.store
    if name == "health":
        return {"ok": True}
    if name == "reset" and method == "POST":
        store.reset()
        store.webhooks_enabled = server.webhooks.enabled
        server.faults.clear()
        server.idempotency.clear()
        server.key_locks.clear()
        server.latency_ms, server.path_latency = 0, {}
        server.webhooks.reset()
        return {"reset": True}
    if name == "webhook":
        if method == "POST":
            if "url" in params:
                server.webhooks.url = get_str(params, "url")
            if "secret" in params:
                server.webhooks.secret = get_str(params, "secret", required=True) or ""
            store.webhooks_enabled = server.webhooks.enabled
        return {"url": server.webhooks.url, "secret": server.webhooks.secret}
    if name == "webhooks/drain" and method == "POST":
        return {}
    if name == "events" and method == "GET":
        return {
            "events": [store.render(e) for e in store.order.get("event", [])],
            "deliveries": [d.as_dict() for d in server.webhooks.deliveries],
        }
    if (m := re.fullmatch(r"events/(evt_\w+)/redeliver", name)) and method == "POST":
        event = store.render(store._get("event", m.group(1))["id"])
        server.webhooks.redeliver(event)
        return event
    if name == "faults":
        if method == "POST":
            mode = FAULT_MODES.get(get_str(params, "mode") or "error_500")
            if mode is None:
                raise invalid(
                    "mode must be error_500, error_500_after_apply, drop_after_apply or hold_after_apply", param="mode"
                )
            fault = Fault(
                path=get_str(params, "path", required=True) or "",
                method=(get_str(params, "method") or "POST").upper(),
                mode=mode,
                remaining=get_int(params, "count") or 1,
                hold_ms=get_int(params, "ms", minimum=0) or 0,
            )
            server.faults.append(fault)
        elif method == "DELETE":
            server.faults.clear()
        return {"faults": [f.as_dict() for f in server.faults if f.remaining > 0]}
    if name == "latency" and method == "POST":
        ms = get_int(params, "ms", minimum=0) or 0
        latency_path = get_str(params, "path")
        if latency_path:
            server.path_latency[latency_path] = ms
        else:
            server.latency_ms = ms
        return {"ms": server.latency_ms, "paths": server.path_latency}
    if name == "clock":
        if method == "POST":
            return store.set_clock(
                now=get_int(params, "now", minimum=0),
                advance=get_int(params, "advance_seconds", minimum=0) or 0,
                frozen=get_bool(params, "frozen"),
            )
        return {"now": store.now(), "frozen": store.frozen_at is not None}
    return _seeding(server, method, name, params, ctx)


def _seeding(server: StripeServer, method: str, name: str, params: dict[str, Any], ctx: Context) -> Any:
    """Objects a test makes or moves in ways Stripe's API does not offer."""
    store = server.store
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
        payment_intent = get_str(params, "payment_intent")
        params = {k: v for k, v in params.items() if k not in {"id", "payment_intent"}}
        ctx.expand = check_params(params, CHARGE_PARAMS)
        return store.create_charge(ctx, params, charge_id=charge_id, payment_intent=payment_intent)
    if name == "charges/bulk" and method == "POST":  # many charges at once (a benchmark's orders)
        return _bulk_charges(server, params, ctx)
    if name == "accounts" and method == "POST":  # seed a connected account with a known id (a shop's)
        account_id = get_str(params, "id", required=True) or ""
        if not re.fullmatch(r"acct_[A-Za-z0-9_]+", account_id):
            raise invalid("id must look like acct_...", param="id")
        if account_id in store.objects:
            return store.render(account_id)
        params = {k: v for k, v in params.items() if k != "id"}
        ctx.expand = check_params(params, ACCOUNT_PARAMS)
        return store.create_account(ctx, params, account_id=account_id)
    if name == "dashboard_refund" and method == "POST":
        ctx.expand = check_params(params, REFUND_PARAMS)
        return store.create_refund(ctx, params)
    if name == "refunds_total" and method == "GET":
        return store.refunds_total(get_str(params, "charge", required=True) or "")
    if name == "transfers_total" and method == "GET":
        return store.transfers_total(params)
    if name == "platform_balance" and method == "POST":
        amount = get_int(params, "amount", required=True) or 0
        return store.top_up(amount, get_currency(params) or "usd")
    raise unrecognized_url(method, f"/_control/{name}")


BULK_MAX = 100_000


def _bulk_charges(server: StripeServer, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """``count`` succeeded charges with ids ``{id_prefix}{n}`` for n from ``start`` (default 0), each of
    ``amount`` in ``currency``, as ``POST /_control/charges`` would make them one by one; existing ids are
    left as they are. Answers the counts only (rendering thousands of charges would take longer than
    making them)."""
    prefix = get_str(params, "id_prefix", required=True) or ""
    if not re.fullmatch(r"ch_[A-Za-z0-9_]*", prefix):
        raise invalid("id_prefix must look like ch_...", param="id_prefix")
    count = get_int(params, "count", required=True, minimum=1) or 0
    if count > BULK_MAX:
        raise invalid(f"count must be at most {BULK_MAX}", param="count")
    start = get_int(params, "start", minimum=0) or 0
    charge = {k: v for k, v in params.items() if k not in {"id_prefix", "count", "start"}}
    check_params(charge, CHARGE_PARAMS)
    store, created = server.store, 0
    for n in range(start, start + count):
        charge_id = f"{prefix}{n}"
        if charge_id in store.objects:
            continue
        store.create_charge(ctx, dict(charge), charge_id=charge_id, render=False)
        created += 1
    return {"created": created, "existing": count - created}
