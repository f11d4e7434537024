"""The in-memory Stripe account's core: objects, the clock, rendering, lists, balance transactions, events.

Every object kind adds its endpoints in its own module (accounts, charges, refunds, transfers, balance,
events), each a subclass of ``StoreBase``; ``store.Store`` puts them together. Every method is synchronous
and validates everything before it changes anything, so the server can run it under one asyncio lock and
a failed call never leaves a half-applied change. Objects start as a deep copy of Stripe's canonical
example (``fixtures.json``) so they carry every field the API returns.
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from devtools.stripe_server.errors import StripeError, invalid, no_such
from devtools.stripe_server.params import Context, created_bounds, new_id, page_params, within

FIXTURES_PATH = Path(__file__).with_name("fixtures.json")
FIXTURES: dict[str, dict[str, Any]] = json.loads(FIXTURES_PATH.read_text())["resources"]
API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 sends; events carry it
PLATFORM = "platform"


def fixture(kind: str) -> dict[str, Any]:
    return copy.deepcopy(FIXTURES[kind])


class StoreBase:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.clock_offset = 0  # seconds added to the real time...
        self.frozen_at: int | None = None  # ...unless a test froze the clock at this instant
        self.objects: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {}  # object kind -> ids, oldest first
        self.owner: dict[str, str] = {}  # balance transaction or payout -> PLATFORM or acct_...
        self.balances: defaultdict[tuple[str, str], int] = defaultdict(int)  # (account, currency) -> available
        self.charge_refunds: dict[str, list[str]] = {}
        self.transferred_from: defaultdict[str, int] = defaultdict(int)  # charge -> net amount transferred
        self.transfer_reversals: dict[str, list[str]] = {}
        self.pending_next: dict[str, int] = {}  # charge -> how many of its next refunds stay pending
        self.new_events: list[dict[str, Any]] = []  # emitted since the server last drained them
        self.webhooks_enabled = False

    # the clock: `created` of every new object, and idempotency keys' expiry

    def now(self) -> int:
        return self.frozen_at if self.frozen_at is not None else int(time.time()) + self.clock_offset

    def set_clock(self, *, now: int | None, advance: int, frozen: bool | None) -> dict[str, Any]:
        """Test control: set (``now``), move (``advance``), freeze or release the clock. Setting an instant
        freezes the clock there unless ``frozen`` is false, so a test can give objects exact ``created``."""
        real = int(time.time())
        current = now if now is not None else self.frozen_at if self.frozen_at is not None else real + self.clock_offset
        current += advance
        if frozen is None:
            frozen = self.frozen_at is not None or now is not None
        self.frozen_at = current if frozen else None
        self.clock_offset = current - real
        return {"now": self.now(), "frozen": self.frozen_at is not None}

    # objects

    def _put(self, obj: dict[str, Any]) -> None:
        self.objects[obj["id"]] = obj
        self.order.setdefault(obj["object"], []).append(obj["id"])

    def _get(self, kind: str, object_id: str, *, param: str | None = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise no_such(kind, object_id, param=param)
        return obj

    # rendering: a deep copy with nested lists filled in, then `expand[]`

    def render(self, object_id: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.objects[object_id])
        if obj["object"] == "charge":
            obj["refunds"] = self._list(self.charge_refunds.get(object_id, []), f"/v1/charges/{object_id}/refunds")
        elif obj["object"] == "transfer":
            reversals = self.transfer_reversals.get(object_id, [])
            obj["reversals"] = self._list(reversals, f"/v1/transfers/{object_id}/reversals")
        return obj

    def _list(self, ids: list[str], url: str, limit: int = 10) -> dict[str, Any]:
        newest_first = list(reversed(ids))
        return {
            "object": "list",
            "data": [self.render(i) for i in newest_first[:limit]],
            "has_more": len(newest_first) > limit,
            "url": url,
        }

    def output(self, value: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        for path in expand:
            self._expand(value, path.split("."), path)
        return value

    def answer(self, ctx: Context, object_id: str) -> dict[str, Any]:
        return self.output(self.render(object_id), ctx.expand)

    def _expand(self, node: Any, segments: list[str], path: str) -> Any:
        if not segments or node is None:
            return node
        if not isinstance(node, dict):
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        head, rest = segments[0], segments[1:]
        if node.get("object") == "list" and head == "data":
            node["data"] = [self._expand(item, rest, path) for item in node["data"]]
            return node
        if head not in node:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            value = self.render(value)
        node[head] = self._expand(value, rest, path)
        return node

    def paginate(self, ctx: Context, ids: list[str], params: dict[str, Any], url: str, kind: str) -> dict[str, Any]:
        """Stripe's list: newest first (by ``created``, then by creation order), ``created`` filters,
        ``limit``, and the ``starting_after`` / ``ending_before`` cursors."""
        limit, starting_after, ending_before = page_params(params)
        bounds = created_bounds(params)
        if bounds:
            ids = [i for i in ids if within(self.objects[i]["created"], bounds)]
        position = {object_id: n for n, object_id in enumerate(ids)}  # the same second: creation order
        newest_first = sorted(ids, key=lambda i: (self.objects[i]["created"], position[i]), reverse=True)
        if starting_after:
            if starting_after not in newest_first:
                raise no_such(kind, starting_after, param="starting_after")
            window = newest_first[newest_first.index(starting_after) + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif ending_before:
            if ending_before not in newest_first:
                raise no_such(kind, ending_before, param="ending_before")
            window = newest_first[: newest_first.index(ending_before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = newest_first[:limit], len(newest_first) > limit
        listed = {"object": "list", "data": [self.render(i) for i in page], "has_more": has_more, "url": url}
        return self.output(listed, ctx.expand)

    # balance transactions: every movement of money writes one, on the account whose balance it moves

    def _txn(
        self,
        *,
        account: str,
        amount: int,
        currency: str,
        type: str,
        category: str,
        source: str,
        description: str | None = None,
    ) -> str:
        now = self.now()
        txn = fixture("balance_transaction")
        txn.update(
            id=new_id("txn"),
            amount=amount,
            available_on=now,
            created=now,
            currency=currency,
            description=description,
            exchange_rate=None,
            fee=0,
            fee_details=[],
            net=amount,
            reporting_category=category,
            source=source,
            status="available",
            type=type,
            balance_type="payments",
        )
        self._put(txn)
        self.owner[txn["id"]] = account
        self.balances[(account, currency)] += amount
        return str(txn["id"])

    def available(self, account: str, currency: str) -> int:
        return self.balances.get((account, currency), 0)

    def require_funds(self, account: str, currency: str, amount: int, message: str, param: str | None = None) -> None:
        """Stripe's ``balance_insufficient`` when ``account``'s available balance cannot cover ``amount``."""
        if self.available(account, currency) < amount:
            raise StripeError(400, message, code="balance_insufficient", param=param)

    # events

    def emit(self, type: str, object_id: str, ctx: Context, previous: dict[str, Any] | None = None) -> None:
        event = fixture("event")
        data: dict[str, Any] = {"object": self.render(object_id)}
        if previous is not None:  # *.updated events, and charge.refunded (Stripe sends it there too)
            data["previous_attributes"] = previous
        event.update(
            id=new_id("evt"),
            api_version=API_VERSION,
            created=self.now(),
            data=data,
            livemode=False,
            pending_webhooks=1 if self.webhooks_enabled else 0,
            request={"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            type=type,
        )
        self._put(event)
        self.new_events.append(copy.deepcopy(event))
