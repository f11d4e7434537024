"""The OpenAPI document at ``/schema/openapi.json`` and the API explorer at ``/schema``.

Litestar generates the document from the controllers: paths, parameters, bodies, success responses.
What it cannot know is said here, once, by :func:`describe`: the RFC 9457 problem documents each
operation answers (status and ``code``), which routes need no bearer token (``auth.PUBLIC_PATHS``), the
content that is not JSON, the second success status of upserts and redemptions, and component names
without Python module paths. ``OPERATIONS`` must name every operation: a route without an entry fails
``tests/api/test_openapi_document.py``, so a new endpoint cannot ship undocumented, and every
``code=`` the application raises must appear in it (same test).

The explorer (Swagger UI) loads its script and style from ``/schema/assets``, files shipped by the
``swagger-ui-py`` package, so it works without reaching any other host.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

from app.auth import PUBLIC_PATHS
from app.errors import PROBLEM_JSON
from app.threads.attachments import CONTENT_TYPES

ASSETS_PATH = "/schema/assets"
# Routes outside the JWT middleware that still take a token of their own (its security scheme).
OWN_TOKEN = {"/metrics": "metrics_token"}
AUTH_CODES = ("auth.missing_token", "auth.invalid_token", "auth.expired_token")
IDEMPOTENCY = "idempotency.key_reused"

FIELD_ERROR = {
    "type": "object",
    "required": ["field", "message"],
    "properties": {
        "field": {"type": "string", "description": "`total.amount`, `lines[1].line_id`, `path:seller_id`, ..."},
        "message": {"type": "string"},
    },
}
PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document. `code` is stable and machine-readable; `detail` is for humans. "
    "Some problems carry more members (`allowed_actions`, `line_ids`, `refundable`, ...).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "`https://sav.dev/problems/<code with / for .>`"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
    },
}
TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the current state",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Business rule violated",
    503: "Service unavailable",
}


@dataclass(frozen=True)
class Op:
    """What one operation answers beyond Litestar's success response.

    ``problems``: status -> codes, on top of the defaults every operation of its kind answers (see
    :func:`_problems`). ``also``: other success statuses with the same body. ``content``: the success
    response's media types when it is not JSON. ``body`` and ``parameters``: what the handler reads by
    itself, which Litestar cannot see.
    """

    problems: dict[int, tuple[str, ...]] = field(default_factory=dict)
    also: dict[int, str] = field(default_factory=dict)
    content: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    parameters: tuple[dict[str, Any], ...] = ()


FORBIDDEN = ("forbidden",)
NOT_FOUND = ("not_found",)
BINARY = {"schema": {"type": "string", "format": "binary"}}
REDEEMED_BEFORE = {200: "This order's earlier redemption (a redemption is idempotent per order)"}

OPERATIONS: dict[str, Op] = {
    # operations
    "GET /health": Op(),
    "GET /ready": Op(problems={503: ("database.unreachable", "database.not_migrated")}),
    "GET /metrics": Op(
        content={"text/plain": {"schema": {"type": "string"}}},
        problems={401: ("auth.invalid_token",), 404: NOT_FOUND},  # its own scrape token; 404 when metrics are off
    ),
    # sellers and orders (pushed by the marketplace)
    "PUT /v1/sellers/{seller_id}": Op(problems={403: FORBIDDEN}, also={201: "Created"}),
    "GET /v1/sellers/{seller_id}": Op(problems={404: NOT_FOUND}),
    "PUT /v1/orders/{order_id}": Op(
        problems={
            403: FORBIDDEN,
            409: ("order.immutable", "order.charge_in_use"),
            422: (
                "order.lines_mismatch",
                "order.commission_exceeds_total",
                "order.unknown_seller",
                "money.currency_mismatch",
            ),
        },
        also={201: "Created"},
    ),
    "GET /v1/orders/{order_id}": Op(problems={404: NOT_FOUND}),
    # threads, messages, attachments, macros
    "POST /v1/threads": Op(
        problems={
            403: FORBIDDEN,
            404: NOT_FOUND,
            422: ("thread.party_mismatch", "thread.unknown_seller", "attachment.not_found"),
        }
    ),
    "GET /v1/threads": Op(problems={403: FORBIDDEN}),
    "GET /v1/threads/{thread_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "GET /v1/threads/{thread_id}/messages": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "POST /v1/threads/{thread_id}/messages": Op(
        problems={403: FORBIDDEN, 404: NOT_FOUND, 422: ("attachment.not_found", "macro.not_applicable")}
    ),
    "POST /v1/threads/{thread_id}/read": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "POST /v1/attachments": Op(
        body={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        },
        problems={
            400: ("attachment.unsupported_type",),
            403: FORBIDDEN,
            413: ("attachment.too_large", "payload_too_large"),
            415: ("unsupported_media_type",),
        },
    ),
    "GET /v1/attachments/{attachment_id}": Op(
        problems={403: FORBIDDEN, 404: NOT_FOUND}, content=dict.fromkeys(CONTENT_TYPES, BINARY)
    ),
    "GET /v1/macros": Op(problems={403: FORBIDDEN}),
    "POST /v1/macros": Op(
        problems={403: FORBIDDEN, 422: ("macro.invalid_template", "macro.unknown_placeholder", "macro.unknown_seller")}
    ),
    # disputes
    "POST /v1/disputes": Op(
        problems={
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: ("dispute.already_open",),
            422: ("dispute.amount_exceeds_order", "money.currency_mismatch"),
        }
    ),
    "GET /v1/disputes": Op(problems={403: FORBIDDEN}),
    "GET /v1/disputes/{dispute_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "GET /v1/disputes/{dispute_id}/events": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "POST /v1/disputes/{dispute_id}/actions": Op(
        problems={
            403: (*FORBIDDEN, "refund.funding_not_allowed"),
            404: NOT_FOUND,
            409: ("dispute.invalid_transition", "dispute.already_claimed"),
            422: (
                "refund.over_budget",
                "refund.over_goodwill_limit",
                "refund.exceeds_refundable",
                "dispute.reopen_not_allowed",
                "dispute.appeal_not_allowed",
                "dispute.decide_not_allowed",
                "money.currency_mismatch",
            ),
        }
    ),
    "POST /v1/disputes/{dispute_id}/csat": Op(
        problems={403: FORBIDDEN, 404: NOT_FOUND, 409: ("dispute.not_resolved", "dispute.already_rated")}
    ),
    "GET /v1/queue": Op(problems={403: FORBIDDEN}),
    # outbound webhooks
    "POST /v1/webhook-endpoints": Op(
        problems={
            400: ("webhook.https_required", "webhook.unresolvable_host", "webhook.private_destination"),
            403: FORBIDDEN,
        }
    ),
    "GET /v1/webhook-endpoints": Op(problems={403: FORBIDDEN}),
    "GET /v1/webhook-endpoints/{endpoint_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "DELETE /v1/webhook-endpoints/{endpoint_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "GET /v1/webhook-endpoints/{endpoint_id}/deliveries": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    # refunds, store credit, promo codes, Stripe
    "POST /v1/refunds": Op(
        problems={
            403: (*FORBIDDEN, "refund.funding_not_allowed"),
            404: NOT_FOUND,
            422: (
                "refund.exceeds_refundable",
                "refund.over_budget",
                "refund.over_goodwill_limit",
                "money.currency_mismatch",
            ),
        }
    ),
    "GET /v1/refunds": Op(problems={403: FORBIDDEN}),
    "GET /v1/refunds/{refund_id}": Op(problems={404: NOT_FOUND}),
    "GET /v1/provider-events": Op(problems={403: FORBIDDEN}),
    "GET /v1/payouts": Op(problems={403: FORBIDDEN}),
    "GET /v1/payouts/{payout_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "GET /v1/sellers/{seller_id}/balance": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    # reconciliation
    "POST /v1/reconciliations": Op(
        body={
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["from", "to"],
                        "properties": {
                            "from": {"type": "string", "format": "date-time"},
                            "to": {"type": "string", "format": "date-time"},
                        },
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "from": {"type": "string", "format": "date-time"},
                            "to": {"type": "string", "format": "date-time"},
                        },
                    }
                },
            },
        },
        problems={
            403: FORBIDDEN,
            413: ("payload_too_large",),
            415: ("unsupported_media_type",),
            422: ("reconciliation.unknown_layout", "reconciliation.invalid_period"),
        },
    ),
    "GET /v1/reconciliations": Op(problems={403: FORBIDDEN}),
    "GET /v1/reconciliations/{reconciliation_id}": Op(problems={403: FORBIDDEN, 404: NOT_FOUND}),
    "GET /v1/reconciliations/{reconciliation_id}/items": Op(
        problems={403: FORBIDDEN, 404: NOT_FOUND},
        content={
            "application/json": {"schema": {"type": "object", "description": "A page of items: {items, next_cursor}"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    ),
    "POST /v1/reconciliations/{reconciliation_id}/items/{item_id}/explanation": Op(
        problems={
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: ("reconciliation.not_a_break", "reconciliation.already_explained"),
        }
    ),
    "GET /v1/buyers/{buyer_id}/credit": Op(problems={404: NOT_FOUND}),
    "POST /v1/buyers/{buyer_id}/credit/redemptions": Op(
        problems={
            403: FORBIDDEN,
            409: ("credit.already_redeemed",),
            422: ("credit.insufficient", "credit.invalid_amount"),
        },
        also=REDEEMED_BEFORE,
    ),
    "POST /v1/promo-codes/{code}/redemptions": Op(
        problems={
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: ("promo.already_redeemed",),
            422: ("promo.expired", "promo.wrong_buyer"),
        },
        also=REDEEMED_BEFORE,
    ),
    "POST /v1/webhooks/stripe": Op(
        body={
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "A Stripe event"}}},
        },
        parameters=(
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "Stripe's signature of the raw body (verified with SAV_STRIPE_WEBHOOK_SECRET)",
            },
        ),
        problems={400: ("validation_error",), 503: ("stripe.webhooks_disabled",)},
    ),
}

_PUBLIC = [re.compile(pattern) for pattern in PUBLIC_PATHS]
# A dotted lower-case module path at the start of a name or after the "_" that stands for "[".
_MODULE_PATH = re.compile(r"(?:^|(?<=_))(?:[a-z_][a-z0-9_]*\.)+")
METHODS = ("get", "put", "post", "delete", "patch")


def is_public(path: str) -> bool:
    return any(pattern.search(path) for pattern in _PUBLIC)


def _problems(method: str, path: str, operation: dict[str, Any], op: Op) -> dict[int, tuple[str, ...]]:
    """The problem statuses and codes of one operation: the defaults of its kind, then its own."""
    found: dict[int, list[str]] = {}

    def add(status: int, *codes: str) -> None:
        known = found.setdefault(status, [])
        known.extend(code for code in codes if code not in known)

    if path.startswith("/v1/"):
        if not is_public(path):
            add(400, "validation_error")  # parameters, bodies, ids, cursors
            add(401, *AUTH_CODES)
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
            add(503, "database.commit_failed")  # the commit happens before the answer starts
        if "requestBody" in operation:
            add(413, "payload_too_large")  # the server's limit on any request body
            if "application/json" in operation["requestBody"].get("content", {}):
                add(415, "unsupported_media_type")
        if any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
            add(422, IDEMPOTENCY)
    for status, codes in op.problems.items():
        add(status, *codes)
    return {status: tuple(found[status]) for status in sorted(found)}


def _problem_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    listed = ", ".join(f"`{code}`" for code in codes)
    response: dict[str, Any] = {
        "description": f"{TITLES.get(status, 'Error')}. Codes: {listed}.",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
    return response


def _rename_components(document: dict[str, Any]) -> None:
    """``Page_app.threads.schemas.ThreadRead_`` -> ``Page_ThreadRead_``: no Python module path in a name."""
    schemas = document.get("components", {}).get("schemas", {})
    renames = {name: _MODULE_PATH.sub("", name) for name in schemas if _MODULE_PATH.search(name)}
    if len(set(renames.values()) | (set(schemas) - set(renames))) != len(schemas):
        raise ValueError(f"component names collide once module paths are removed: {sorted(renames)}")
    document["components"]["schemas"] = {renames.get(name, name): schema for name, schema in sorted(schemas.items())}
    refs = {f"#/components/schemas/{old}": f"#/components/schemas/{new}" for old, new in renames.items()}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(ref := node.get("$ref"), str) and ref in refs:
                node["$ref"] = refs[ref]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def describe(generated: dict[str, Any]) -> dict[str, Any]:
    """The document Litestar generated, completed (a new dict; the input is left as it is)."""
    document = copy.deepcopy(generated)
    _rename_components(document)
    document["components"]["schemas"].update({"Problem": PROBLEM, "FieldError": FIELD_ERROR})
    document["components"].setdefault("securitySchemes", {})["metrics_token"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The scrape token set in SAV_METRICS_TOKEN (metrics are off without it).",
    }
    request_id = {"X-Request-ID": {"schema": {"type": "string"}, "description": "echoed or generated"}}
    for path, item in document["paths"].items():
        for method in METHODS:
            if (operation := item.get(method)) is None:
                continue
            # A route missing from the table still gets the defaults of its kind (and fails the test).
            op = OPERATIONS.get(f"{method.upper()} {path}", Op())
            if op.body is not None:
                operation["requestBody"] = op.body
            if op.parameters:
                operation["parameters"] = [*operation.get("parameters", []), *op.parameters]
            if path in OWN_TOKEN:
                operation["security"] = [{OWN_TOKEN[path]: []}]  # not the marketplace's JWT: a token of its own
            elif is_public(path):
                operation["security"] = []  # no bearer token (the document's default requires one)
            responses = {code: r for code, r in operation["responses"].items() if not code.startswith(("4", "5"))}
            [success] = responses.values()
            if op.content is not None:
                success["content"] = op.content
            for status, description in op.also.items():
                responses[str(status)] = {**success, "description": description}
            for status, codes in _problems(method, path, operation, op).items():
                responses[str(status)] = _problem_response(status, codes)
            for response in responses.values():
                response["headers"] = {**response.get("headers", {}), **request_id}
            operation["responses"] = dict(sorted(responses.items()))
    return document


class _Described:
    """Render plugins serve the described document; it is built once, on the first request."""

    _cache: tuple[int, dict[str, Any]] | None = None

    def described(self, generated: dict[str, Any]) -> dict[str, Any]:
        if self._cache is None or self._cache[0] != id(generated):
            self._cache = (id(generated), describe(generated))
        return self._cache[1]


class DescribedJson(_Described, JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.described(openapi_schema))


class LocalSwagger(_Described, SwaggerRenderPlugin):
    """Swagger UI from this server's own files: the explorer works offline and loads nothing from elsewhere."""

    def __init__(self) -> None:
        super().__init__(
            path="/swagger",
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.described(openapi_schema))


def swagger_ui_dir() -> Path:
    """The swagger-ui dist files shipped by the ``swagger-ui-py`` package (found without importing it)."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[swagger_ui_dir()], include_in_schema=False, name="swagger-ui-assets"
    )
