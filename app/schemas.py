"""Shared schema pieces: the strict base Struct, ids, and cursor pages."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import msgspec
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg, SkipValidationMarker

from app.errors import ValidationFailed, split_msgspec_message

T = TypeVar("T")

# Opaque ids from the marketplace: printable, no slashes or whitespace, bounded.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]


class Schema(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request and response bodies: unknown fields in a request are a 400, never silently dropped."""


class Page(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None


# Request bodies are decoded strictly: Litestar's own conversion is lenient (it would turn the string
# "5000" into the integer 5000), which is wrong for money. Handlers declare ``data: StrictBody[T]`` --
# the OpenAPI schema shows T -- and call :func:`decode` on what arrives.
StrictBody: TypeAlias = Annotated[T, BodyKwarg(media_type=RequestEncodingType.JSON), SkipValidationMarker()]


def decode(type_: type[T], raw: Any) -> T:
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        field, message = split_msgspec_message(str(exc))
        raise ValidationFailed(f"{field or 'body'}: {message}", field=field or "body") from None


def path_id(value: str, name: str) -> str:
    """Validate an id taken from the URL with the same rule as ids in bodies."""
    try:
        return msgspec.convert(value, Id)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"{name}: {exc}", field=f"path:{name}") from None


def encode_cursor(*parts: Any) -> str:
    """An opaque keyset cursor: the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key back, each part converted to its type; a cursor this API did not make is a 400."""
    try:
        raw = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return tuple(msgspec.convert(value, kind) for value, kind in zip(raw, types, strict=True))
    except (ValueError, TypeError, msgspec.DecodeError, msgspec.ValidationError):
        raise ValidationFailed("cursor is not one this API returned", field="query:cursor") from None
