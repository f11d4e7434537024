"""Shared schema pieces: the strict base Struct, the id and text policy, and cursor pages.

Every value a client sends passes one policy (docs/api.md, "Ids and text"):

- ids of resources (orders, shops, lines, disputes, threads, ...): 1-64 characters of
  ``A-Z a-z 0-9 _ . -``, starting with a letter or digit;
- user ids (a token's ``sub``, ``buyer_id``, ``assignee_id``): 1-128 characters, the same set plus
  ``@ + |`` (e-mail addresses and identity-provider subjects fit);
- any other text: no control characters except tab, newline and carriage return, no lone surrogates
  (PostgreSQL cannot store NUL, and the rest has no place in after-sales data);
- timestamps: years 1970 to 2099 (later ones overflow once a duration is added).

Bodies are checked by :func:`decode`, path and query parameters by ``app/edge.py``, token claims by
``app/auth.py``: all three use the definitions below.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import msgspec
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import BodyKwarg, SkipValidationMarker

from app.errors import ValidationFailed, split_msgspec_message

T = TypeVar("T")

ID_MAX_LENGTH = 64
USER_ID_MAX_LENGTH = 128
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+|\-]*$"

Id = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="1-64 characters: letters, digits, `_ . -`; starts with a letter or digit",
    ),
]
UserId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=USER_ID_MAX_LENGTH,
        pattern=USER_ID_PATTERN,
        description="1-128 characters: letters, digits, `_ . - @ + |`; starts with a letter or digit",
    ),
]

# Event ids are PostgreSQL BIGINTs: a larger number in a resume would fail in the database, not in validation.
MAX_EVENT_ID = 2**63 - 1
EventId = Annotated[int, msgspec.Meta(le=MAX_EVENT_ID)]

_ID = re.compile(ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)
# C0 controls other than tab, newline and carriage return; DEL and the C1 controls; lone surrogates.
FORBIDDEN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
EARLIEST_YEAR, LATEST_YEAR = 1970, 2099


def id_problem(value: str, *, user: bool = False) -> str | None:
    """Why ``value`` is not an id (a user id when ``user``), or None when it is one."""
    limit, pattern = (USER_ID_MAX_LENGTH, _USER_ID) if user else (ID_MAX_LENGTH, _ID)
    if not 1 <= len(value) <= limit:
        return f"must be 1 to {limit} characters"
    if not pattern.match(value):
        extra = ", @ + |" if user else ""
        return f"may only contain letters, digits and _ . -{extra}, starting with a letter or digit"
    return None


def parse_event_id(value: str) -> int | None:
    """An event id from a URL (``?after_event_id=``): ASCII digits within BIGINT, else None."""
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_EVENT_ID)):
        return None
    number = int(value)
    return number if number <= MAX_EVENT_ID else None


def text_problem(value: str) -> str | None:
    """Why ``value`` may not be stored as text, or None when it may."""
    if found := FORBIDDEN_TEXT.search(value):
        return f"contains the control character U+{ord(found.group()):04X}; only tab and newlines are allowed"
    return None


def check_values(value: Any, path: str = "") -> None:
    """Apply the text and timestamp policy to every string and datetime of a decoded body.

    Walks the typed result of decoding, so its depth is bounded by the schema, not by the client."""
    problem: str | None = None
    if isinstance(value, str):
        problem = text_problem(value)
    elif isinstance(value, datetime):
        if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
            problem = f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}"
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_values(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_values(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_values(key, path)
            check_values(item, f"{path}.{key}" if path else str(key))
    if problem is not None:
        field = path or "body"
        raise ValidationFailed(f"{field}: {problem}", field=field)


class Schema(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request and response bodies: unknown fields in a request are a 400, never silently dropped."""


class Page(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None


# Request bodies are decoded strictly: Litestar's own conversion is lenient (it would turn the string
# "5000" into the integer 5000), which is wrong for money. Handlers declare ``data: StrictBody[T]`` --
# the OpenAPI schema shows T -- and call :func:`decode` on what arrives.
StrictBody: TypeAlias = Annotated[T, BodyKwarg(media_type=RequestEncodingType.JSON), SkipValidationMarker()]


@dataclass
class UploadForm:
    """An upload: ``multipart/form-data`` with exactly one part, ``file``."""

    file: UploadFile


# Multipart is parsed by Litestar but validated here, so a form without its file, with two, or with other
# fields is a 400 naming the field rather than a message about Python types (or a 500).
UploadBody: TypeAlias = Annotated[
    UploadForm, BodyKwarg(media_type=RequestEncodingType.MULTI_PART), SkipValidationMarker()
]


def upload_file(form: Any) -> UploadFile:
    """The one file of an :data:`UploadBody`."""
    if not isinstance(form, Mapping) or "file" not in form:
        raise ValidationFailed("file: a multipart part named `file` is required", field="file")
    if other := [name for name in form if name != "file"]:
        raise ValidationFailed(f"{other[0]}: unknown form field (only `file` is read)", field=str(other[0]))
    file = form["file"]
    if isinstance(file, list):
        raise ValidationFailed("file: send exactly one file per upload", field="file")
    if not isinstance(file, UploadFile):
        raise ValidationFailed("file: must be a file part (with a filename), not a text field", field="file")
    return file


def decode(type_: type[T], raw: Any) -> T:
    try:
        value = msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        field, message = split_msgspec_message(str(exc))
        raise ValidationFailed(f"{field or 'body'}: {message}", field=field or "body") from None
    check_values(value)
    return value


def encode_cursor(*parts: Any) -> str:
    """An opaque keyset cursor: the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key back, each part converted to its type; a cursor this API did not make is a 400."""
    try:
        raw = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parts: tuple[Any, ...] = tuple(msgspec.convert(value, kind) for value, kind in zip(raw, types, strict=True))
        check_values(parts)  # a forged cursor carrying NUL would reach the database
    except (ValueError, TypeError, RecursionError, ValidationFailed, msgspec.DecodeError, msgspec.ValidationError):
        raise ValidationFailed("cursor is not one this API returned", field="query:cursor") from None
    return parts
