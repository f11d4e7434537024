"""The staging's COPY text (app/reconciliation/job.py ``_copy_text``): fast path for ordinary ids, every
field escaped when a provider id holds a backslash, a tab or a line break, nulls as ``\\N`` — read back
here with PostgreSQL's text-format rules, independently of the writer."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from app.reconciliation.job import _copy_text

AT = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
# After a backslash: these letters name a control character; any other character stands for itself.
UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


def read_copy_text(text: str) -> list[tuple[str | None, ...]]:
    """PostgreSQL's COPY text format: one row per line, tab-separated, ``\\N`` null, backslash escapes."""
    rows = []
    for line in text.split("\n")[:-1]:
        fields: list[str | None] = []
        for raw in line.split("\t"):
            unescaped = re.sub(r"\\(.)", lambda m: UNESCAPE.get(m.group(1), m.group(1)), raw)
            fields.append(None if raw == "\\N" else unescaped)
        rows.append(tuple(fields))
    return rows


def row(pid: str, cls: str | None = "charge", txn: str = "txn_1") -> tuple[Any, ...]:
    return ("rec_1", txn, pid, cls, 1234, "EUR", AT, True)


@pytest.mark.parametrize(
    ("ids", "txn"),
    [
        (["ch_plain", "re_plain"], "txn_2"),
        (["ch_back\\slash", "re_plain"], "txn_2"),
        (["ch_tab\there", "re_plain"], "txn_2"),
        (["ch_line\nbreak", "re_cr\rhere"], "txn_2"),
        (["ch_looks_null\\N", "re_plain"], "txn_2"),
        (["ch_plain", "re_plain"], "txn\t2"),
    ],
)
def test_copy_text_reads_back_field_for_field(ids: list[str], txn: str) -> None:
    rows = [row(ids[0]), row(ids[1], cls=None, txn=txn)]
    read = read_copy_text(_copy_text(rows))
    assert [r[2] for r in read] == ids
    assert [r[1] for r in read] == ["txn_1", txn]
    assert [r[3] for r in read] == ["charge", None]  # a row without a class is a null, not the text "\N"
    assert read[0][4:] == ("1234", "EUR", AT.isoformat(), "t")
