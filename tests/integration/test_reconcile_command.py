"""``sav reconcile`` (SQLite and PostgreSQL), run as a process against the suite's database: a generated
export whose ledger is booked reconciles to exactly its injected breaks (exit 0, breaks or not); an
unreadable row or a file that is no export exits 2 with the error; a period needs both ends.

Each test generates its period in a year of its own (2041...), so a reconciliation only meets its movements.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.db import ROOT
from app.reconciliation.parsing import Layout
from app.settings import Settings
from devtools.reconciliation_data import Period, write_period
from tests.factories import book_ledger


def sav(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "reconcile", *args],
        env={
            **os.environ,
            "SAV_DATABASE_URL": settings.database_url,
            "SAV_JWT_SECRET": settings.jwt_secret,
            "SAV_STRIPE_API_KEY": "",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def export(settings: Settings, tmp_path: Path, *, year: int, layout: Layout, book: bool = True) -> tuple[Path, Period]:
    out, batches = io.StringIO(newline=""), []
    period = write_period(
        out, rows=400, breaks=3, layout=layout, on_ledger=batches.append, seed=year,
        start=datetime(year, 11, 1, tzinfo=UTC), batch_size=100,
    )  # fmt: skip
    if book:
        book_ledger(settings, batches)
    path = tmp_path / f"export-{year}.csv"
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    return path, period


def test_a_file_reconciles_to_its_injected_breaks_and_prints_the_counts(settings: Settings, tmp_path: Path) -> None:
    path, period = export(settings, tmp_path, year=2041, layout=Layout.ITEMIZED)
    result = sav(settings, "--file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    rec = json.loads(result.stdout)
    assert rec["status"] == "done"
    assert rec["source"] == "file"
    assert rec["counts"] == period.counts
    assert rec["progress"]["rows"] == period.rows == 400
    assert "reconciling" in result.stderr  # the progress bar, on stderr

    # As a table: one line per count, then the totals per currency.
    again = sav(settings, "--file", str(path), "--quiet")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith("reconciliation rec_")
    assert ": done, 400 rows in " in lines[0]
    for status, count in period.counts.items():
        assert f"  {status:<20} {count:>10}" in lines
    assert any(line.split()[:1] == ["EUR"] for line in lines)
    assert again.stderr == ""


def test_an_unreadable_row_exits_2_naming_its_line_and_column(settings: Settings, tmp_path: Path) -> None:
    path, _ = export(settings, tmp_path, year=2042, layout=Layout.DASHBOARD, book=False)
    with path.open(encoding="utf-8", newline="") as text:
        records = text.read().split("\r\n")
    # Records: the header, row 0 (two physical lines: a line break inside its description), row 1, row 2...
    cells = records[3].split(",")
    cells[3] = "12x"  # the Amount of row 2, on the file's 5th line
    records[3] = ",".join(cells)
    path.write_text("\r\n".join(records), encoding="utf-8", newline="")
    result = sav(settings, "--file", str(path), "--quiet")
    assert result.returncode == 2
    assert "failed" in result.stderr
    assert "line 5, column 'Amount'" in result.stderr


def test_a_file_that_is_no_export_or_is_missing_exits_2(settings: Settings, tmp_path: Path) -> None:
    other = tmp_path / "orders.csv"
    other.write_text("order_id,total\r\nord-1,12.00\r\n", encoding="utf-8")
    result = sav(settings, "--file", str(other))
    assert result.returncode == 2
    assert "not a Stripe balance export" in result.stderr
    missing = sav(settings, "--file", str(tmp_path / "nowhere.csv"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_a_period_needs_both_ends_and_a_provider(settings: Settings) -> None:
    assert "--from and --to" in sav(settings, "--from", "2043-11-01").stderr
    assert "not an ISO 8601 time" in sav(settings, "--from", "yesterday", "--to", "2043-12-01").stderr
    # The suite's settings have no SAV_STRIPE_API_KEY: nothing to pull from.
    no_provider = sav(settings, "--from", "2043-11-01", "--to", "2043-12-01")
    assert no_provider.returncode != 0
    assert "SAV_STRIPE_API_KEY" in no_provider.stderr
