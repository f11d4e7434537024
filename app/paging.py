"""Cursor pages, written once: the query parameters every list takes, the keyset predicate of a
newest-first list, and the slicing of a fetched window into a page.

A list fetches ``limit + 1`` rows: the extra row only says that a next page exists; the cursor is the
sort key of the last row shown (``app.schemas.encode_cursor``), so a page never skips or repeats a row
that was there when the first page was read, whatever is inserted meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from litestar.params import QueryParameter
from sqlalchemy import ColumnElement, and_, or_

from app.schemas import decode_cursor, encode_cursor

R = TypeVar("R")

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="page size (1..200)")]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page")]


def older_than(cursor: str, at: Any, id_: Any) -> ColumnElement[bool]:
    """Rows after ``cursor`` in a list ordered by ``(at, id_)`` descending (newest first)."""
    last_at, last_id = decode_cursor(cursor, (datetime, str))
    return or_(at < last_at, and_(at == last_at, id_ < last_id))


def window(rows: Sequence[R], limit: int) -> tuple[list[R], bool]:
    """The rows of the page out of the ``limit + 1`` fetched, and whether a next page exists."""
    return list(rows[:limit]), len(rows) > limit


def next_cursor(shown: Sequence[R], more: bool, key: Callable[[R], Sequence[Any]]) -> str | None:
    """The cursor of the next page: the sort key of the last row shown, when there is a next page."""
    return encode_cursor(*key(shown[-1])) if more and shown else None


def newest_first_key(row: Any) -> tuple[str, str]:
    """The sort key of a row listed by ``(created_at, id)`` descending."""
    return row.created_at.isoformat(), row.id
