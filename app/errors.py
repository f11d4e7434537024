"""Domain errors and the one place that turns any error into an RFC 9457 problem document.

Services raise :class:`DomainError` subclasses; they never know about HTTP. Framework errors (unknown
route, wrong method, a body msgspec rejects) and unexpected exceptions go through the same handler so
every error a client sees has the same shape: ``{type, title, status, detail, code, ...}``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)

logger = logging.getLogger("sav.errors")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://sav.dev/problems/"


class DomainError(Exception):
    """A failure a client can act on. ``code`` is stable and machine-readable; ``detail`` is for humans."""

    status: int = 400
    code: str = "error"
    title: str = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class ValidationFailed(DomainError):
    status, code, title = 400, "validation_error", "Invalid request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        if field is not None:
            extra.setdefault("errors", [{"field": field, "message": detail}])
        super().__init__(detail, **extra)


class Unauthenticated(DomainError):
    status, code, title = 401, "auth.invalid_token", "Authentication required"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class BusinessRuleViolation(DomainError):
    status, code, title = 422, "unprocessable", "Business rule violated"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ServiceUnavailable(DomainError):
    status, code, title = 503, "unavailable", "Service unavailable"


_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code"})


def problem_response(
    status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.replace(".", "/"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        # Extension members never replace the standard ones (RFC 9457: `status` is the HTTP status).
        body.update({key: value for key, value in extra.items() if key not in _STANDARD_MEMBERS})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# msgspec says e.g. "Expected `int`, got `float` - at `$.total.amount`" or "Object contains unknown
# field `foo` - at `$.lines[0]`"; the field path is what a client needs.
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def split_msgspec_message(message: str) -> tuple[str, str]:
    """``"Expected `int`, got `str` - at `$.total.amount`"`` -> ``("total.amount", "Expected `int`, got `str`")``."""
    path = ""
    if match := _AT.search(message):
        path = match["path"]
        message = message[: match.start()]
    for pattern in (_UNKNOWN, _MISSING):
        if named := pattern.search(message):
            path = f"{path}.{named['name']}" if path else named["name"]
    return path, message


def _field_errors(exc: ValidationException) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if isinstance(exc.extra, dict) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        # Litestar names the source with a ParamType enum member: `query`, not `ParamType.QUERY`.
        source = getattr(item.get("source"), "value", item.get("source"))
        path, message = split_msgspec_message(str(item.get("message", "")))
        if not path and item.get("key"):
            path = str(item["key"])
        if source and source != "body" and not path.startswith(str(source)):
            path = f"{source}:{path}" if path else str(source)
        errors.append({"field": path or "body", "message": message})
    return errors


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, DomainError):
        return problem_response(exc.status, exc.code, exc.title, exc.detail, exc.extra)
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc)
        if errors:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        else:
            detail = exc.detail or "The request could not be parsed"
        return problem_response(400, "validation_error", "Invalid request", detail, {"errors": errors})
    if isinstance(exc, NotAuthorizedException):
        return problem_response(401, "auth.invalid_token", "Authentication required", exc.detail)
    if isinstance(exc, PermissionDeniedException):
        return problem_response(403, "forbidden", "Forbidden", exc.detail or "You may not perform this action")
    if isinstance(exc, NotFoundException):
        return problem_response(404, "not_found", "Not found", "No resource at this address")
    if isinstance(exc, MethodNotAllowedException):
        response = problem_response(
            405, "method_not_allowed", "Method not allowed", f"{request.method} is not allowed here"
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        if exc.status_code == 400:
            detail = exc.detail or "The request could not be parsed"
            return problem_response(
                400, "validation_error", "Invalid request", detail, {"errors": [{"field": "body", "message": detail}]}
            )
        code = {413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited"}.get(
            exc.status_code, "http_error"
        )
        return problem_response(exc.status_code, code, "Request error", exc.detail)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal_error", "Internal server error", "An unexpected error occurred")
