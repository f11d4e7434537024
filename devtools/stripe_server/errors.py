"""Stripe-shaped errors: ``{"error": {"type", "code", "message", "param", "doc_url"}}`` with Stripe's statuses."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error answered in Stripe's wire format.

    ``stored`` follows Stripe's idempotency rule: a request that failed parameter validation never started
    executing, so its result is not saved under the idempotency key (a corrected retry may reuse the key).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.stored = stored
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if request_id:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None, stored: bool = False) -> StripeError:
    """A parameter validation error (400, not saved under the idempotency key)."""
    return StripeError(400, message, code=code, param=param, stored=stored)


def missing(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def unknown_param(param: str) -> StripeError:
    return invalid(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")


def no_such(kind: str, object_id: str, *, param: str | None = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
        stored=False,
    )
