"""The edge: what every HTTP request passes before a handler runs, and what every ``/v1`` response carries.

One place, not one check per controller:

- the raw path and query string are valid UTF-8;
- every path and query parameter follows the id and text policy of ``app/schemas.py``: ``*_id`` and
  ``after`` are ids (user ids for ``buyer_id`` and ``assignee_id``), any other value is text without
  control characters, at most 512 characters;
- a query parameter the operation does not declare is a 400 naming it (bodies are strict, queries too),
  and so is a single-valued one given twice;
- a body is sent as the media type the operation reads (JSON, or multipart for uploads), else 415;
- a JSON body that is not UTF-8 or nests deeper than the decoder follows is a 400 (:class:`SavRequest`);
- every ``/v1`` response says ``X-Content-Type-Options: nosniff`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ParamType, RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import BodyKwarg
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import UnsupportedMediaType, ValidationFailed
from app.schemas import id_problem, text_problem

API_PREFIX = "/v1/"
MAX_PARAMETER_LENGTH = 512
USER_ID_PARAMETERS = frozenset({"buyer_id", "assignee_id"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
MAX_NAMED = 10


def parameter_problem(name: str, value: str) -> str | None:
    """Why a path or query value may not be used, or None. The rule follows the parameter's name."""
    if name in USER_ID_PARAMETERS:
        return id_problem(value, user=True)
    if name.endswith("_id") or name == "after":
        return id_problem(value)
    if len(value) > MAX_PARAMETER_LENGTH:
        return f"must be at most {MAX_PARAMETER_LENGTH} characters"
    return text_problem(value)


def _utf8(raw: bytes, field: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(f"{field} is not valid UTF-8", field=field) from None


def _query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    pairs = []
    for part in query_string.split(b"&"):
        if part:
            name, _, value = part.replace(b"+", b" ").partition(b"=")
            pairs.append((_utf8(name, "query"), _utf8(value, "query")))
    return pairs


# What each operation declares, worked out once per route handler from Litestar's own kwargs model (so
# parameters declared by dependencies count too). Keyed by id with the handler kept, so ids are not reused.
_DECLARED: dict[int, tuple[HTTPRouteHandler, dict[str, bool], str | None]] = {}


def _declared(handler: HTTPRouteHandler, path_params: dict[str, Any]) -> tuple[dict[str, bool], str | None]:
    """(query parameter name -> may repeat, the body's media type or None when the operation reads none)."""
    known = _DECLARED.get(id(handler))
    if known is None:
        model = handler.create_kwargs_model(path_parameters=cast("Any", dict.fromkeys(path_params)))
        query = {p.field_alias: p.is_sequence for p in model.expected_query_params if p.param_type == ParamType.QUERY}
        data = handler.parsed_fn_signature.parameters.get("data")
        media: str | None = None
        if data is not None:
            kwarg = data.kwarg_definition
            media_type = kwarg.media_type if isinstance(kwarg, BodyKwarg) else RequestEncodingType.JSON
            media = media_type.value if isinstance(media_type, Enum) else str(media_type)
        known = _DECLARED[id(handler)] = (handler, query, media)
    return known[1], known[2]


def _check_parameters(scope: Scope, handler: HTTPRouteHandler) -> None:
    if raw_path := scope.get("raw_path"):
        _utf8(raw_path.partition(b"?")[0], "path")  # some servers (and test clients) leave the query on it
    for name, value in scope["path_params"].items():
        if isinstance(value, str) and (problem := parameter_problem(name, value)):
            raise ValidationFailed(f"path:{name}: {problem}", field=f"path:{name}")
    declared, _ = _declared(handler, scope["path_params"])
    seen: set[str] = set()
    unknown: list[str] = []
    for name, value in _query_pairs(scope.get("query_string", b"")):
        if name not in declared:
            unknown.append(name)
            continue
        if name in seen and not declared[name]:
            raise ValidationFailed(f"query:{name}: given more than once", field=f"query:{name}")
        seen.add(name)
        if problem := parameter_problem(name, value):
            raise ValidationFailed(f"query:{name}: {problem}", field=f"query:{name}")
    if unknown:
        unknown = unknown[:MAX_NAMED]  # enough to act on; a flood of names is not echoed back
        names = ", ".join(repr(name) for name in unknown)
        accepted = ", ".join(sorted(declared)) or "none"
        raise ValidationFailed(
            f"unknown query parameter {names}; this operation accepts: {accepted}",
            errors=[{"field": f"query:{name}", "message": "unknown query parameter"} for name in unknown],
        )


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _check_media_type(scope: Scope, handler: HTTPRouteHandler) -> None:
    _, expected = _declared(handler, scope["path_params"])
    if expected is None or scope.get("method") not in BODY_METHODS or not _has_body(scope):
        return
    sent = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
    media = sent.decode("latin-1").split(";", 1)[0].strip().lower()
    if not media:
        return  # no declared type: read as what the operation takes (and rejected by it if it is not)
    if expected == RequestEncodingType.JSON.value:
        ok = media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
    else:
        ok = media == expected
    if not ok:
        raise UnsupportedMediaType(f"this operation reads {expected}, not {media}", accepted=expected)


def edge_middleware(app: ASGIApp) -> ASGIApp:
    """Check every ``/v1`` HTTP request's parameters and media type against its operation (after routing)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        is_http = scope["type"] == "http"  # type: ignore[comparison-overlap]
        if is_http and scope["path"].startswith(API_PREFIX) and isinstance(handler, HTTPRouteHandler):
            _check_parameters(scope, handler)
            _check_media_type(scope, handler)
        await app(scope, receive, send)

    return middleware


class SavRequest(Request[Any, Any, Any]):
    """Litestar's request, with the JSON decoding failures it lets through as 500s turned into 400s."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError:
            raise ValidationFailed("the body is not valid UTF-8", field="body") from None
        except RecursionError:
            raise ValidationFailed("the JSON body nests too deeply", field="body") from None


async def security_headers(message: Message, scope: Scope) -> None:
    """A before-send hook: API answers are never sniffed into another type nor kept by a cache."""
    if message["type"] == "http.response.start" and scope.get("path", "").startswith("/v1"):
        headers = MutableScopeHeaders.from_message(message)
        if "x-content-type-options" not in headers:
            headers["X-Content-Type-Options"] = "nosniff"
        headers["Cache-Control"] = "no-store"
