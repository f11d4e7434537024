"""Events: every webhook the server sends is also an event object, listed newest first like Stripe's."""

from __future__ import annotations

from typing import Any

from devtools.stripe_server.params import Context, get_str
from devtools.stripe_server.state import StoreBase


class Events(StoreBase):
    def retrieve_event(self, ctx: Context, params: dict[str, Any], event_id: str) -> dict[str, Any]:
        return self.answer(ctx, self._get("event", event_id)["id"])

    def list_events(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ids = self.order.get("event", [])
        wanted = get_str(params, "type")
        if wanted is not None:
            ids = [e for e in ids if self.objects[e]["type"] == wanted]
        return self.paginate(ctx, ids, params, "/v1/events", "event")
