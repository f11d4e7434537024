"""Reconciliation benchmark (issue 13), on PostgreSQL: ``--rows`` provider rows against their ledger with
``--breaks`` injected breaks of each kind, end to end.

1. A throwaway ``sav_bench_<random>`` database, migrated; the generator (devtools/reconciliation_data.py)
   writes the period's CSV export (``--layout dashboard|itemized``) and hands its ledger over in batches,
   loaded with ``COPY`` into ``ledger_transactions`` and ``ledger_entries``; then ``VACUUM ANALYZE``.
   Seeding is not measured.
2. ``--paths api``: ``sav serve`` (no embedded worker) and one ``sav worker`` are started; the clock runs
   from the upload (``POST /v1/reconciliations``, multipart, as finance) until ``GET`` says ``done``.
   ``--paths cli``: ``sav reconcile --file`` in its own process, timed from its start to its exit.
3. For each: rows/s, the peak resident memory of every process involved (``VmHWM`` of the server and the
   worker, read from /proc before they stop; ``ru_maxrss`` of the CLI process), and the check: the counts
   equal the generator's and the breaks listed by ``GET .../items?status=...&format=csv`` are exactly the
   injected ones (every one found, nothing else). ``--paths api`` also reports the worker's own marks
   (``worker_marks``: claimed, first batch staged, every row staged, done) as seconds since the upload.

    .venv/bin/python -m bench.reconciliation --rows 1000000 --breaks 1000 --paths api,cli

Results in ``bench/results/reconciliation-<time>.json``, server and worker logs beside them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.refunds import SAV
from bench.release import drop_database, machine, migrate, new_database
from bench.run import free_port, stop, wait_ready
from bench.threads_scale import ROOT, SECRET, token
from devtools.reconciliation_data import START, LedgerTx, Period, write_period

BREAK_STATUSES = ("amount_mismatch", "missing_in_ledger", "missing_in_provider")
TX_COLUMNS = "id, kind, order_id, reference, provider_id, created_at"
ENTRY_COLUMNS = "transaction_id, account, order_id, party_id, amount, currency"
NULL = "\\N"  # COPY's text format


def seed(dsn: str, export: Path, args: argparse.Namespace) -> tuple[Period, dict[str, float]]:
    """Write the export and COPY its ledger; returns the generator's answer and the seconds each part took."""
    started = time.perf_counter()
    copying = 0.0
    with psycopg.connect(dsn) as conn, export.open("w", encoding="utf-8", newline="") as out:

        def on_ledger(batch: list[LedgerTx]) -> None:
            nonlocal copying
            begun = time.perf_counter()
            # COPY's text format written directly (no value the generator makes holds a tab, a newline or a
            # backslash; None is \\N): four times faster than write_row() per row.
            with conn.cursor() as cur:
                with cur.copy(f"COPY ledger_transactions ({TX_COLUMNS}) FROM STDIN") as copy:
                    copy.write(
                        "".join(
                            f"{tx_id}\t{kind}\t{order_id}\tbench:{tx_id}\t{provider_id}\t{at.isoformat()}\n"
                            for tx_id, kind, provider_id, order_id, at, _ in batch
                        )
                    )
                with cur.copy(f"COPY ledger_entries ({ENTRY_COLUMNS}) FROM STDIN") as copy:
                    copy.write(
                        "".join(
                            f"{tx_id}\t{account}\t{order_id}\t{party or NULL}\t{amount}\t{currency}\n"
                            for tx_id, _, _, order_id, _, entries in batch
                            for account, amount, currency, party in entries
                        )
                    )
            conn.commit()
            copying += time.perf_counter() - begun

        period = write_period(
            out, rows=args.rows, breaks=args.breaks, layout=args.layout, on_ledger=on_ledger, seed=args.seed
        )
    generated = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) ledger_transactions, ledger_entries")
    return period, {
        "generate_and_copy_seconds": round(generated, 1),
        "of_which_copy_seconds": round(copying, 1),
        "vacuum_analyze_seconds": round(time.perf_counter() - started - generated, 1),
    }


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def wait_done(
    client: httpx.Client, rec_id: str, headers: dict[str, str], timeout: float, rows: int, started: float
) -> tuple[dict[str, Any], float | None]:
    """Poll until the reconciliation ends; also when ``progress.rows`` reached ``rows`` (every row staged:
    what is left is matching), in seconds since ``started``."""
    deadline, staged = time.monotonic() + timeout, None
    while True:
        rec: dict[str, Any] = client.get(f"/v1/reconciliations/{rec_id}", headers=headers).json()
        if staged is None and rec["progress"]["rows"] >= rows:
            staged = time.perf_counter() - started
        if rec["status"] != "running" or time.monotonic() > deadline:
            return rec, staged
        time.sleep(0.05)


def check(client: httpx.Client, rec: dict[str, Any], period: Period, headers: dict[str, str]) -> dict[str, Any]:
    """Every injected break found with its kind, nothing else, and the counts the generator expects."""
    found: set[tuple[str, str]] = set()
    for status in BREAK_STATUSES:
        response = client.get(
            f"/v1/reconciliations/{rec['reconciliation_id']}/items",
            params={"status": status, "format": "csv"},
            headers=headers,
        )
        response.raise_for_status()
        found |= {(row["status"], row["provider_id"]) for row in csv.DictReader(io.StringIO(response.text))}
    missed, false_positives = period.breaks - found, found - period.breaks
    return {
        "counts_equal": rec["counts"] == period.counts,
        "counts": rec["counts"],
        "expected_counts": period.counts,
        "breaks_expected": len(period.breaks),
        "breaks_found": len(found & period.breaks),
        "missed": sorted(missed)[:10],
        "false_positives": sorted(false_positives)[:10],
        "ok": rec["status"] == "done" and rec["counts"] == period.counts and not missed and not false_positives,
    }


def result(rec: dict[str, Any], wall: float, rows: int, peaks: dict[str, float]) -> dict[str, Any]:
    return {
        "status": rec["status"],
        "error": rec.get("error"),
        "seconds": round(wall, 2),
        "rows_per_second": round(rows / wall) if wall > 0 else None,
        "peak_rss_mb": peaks,
        "peak_rss_mb_max": max(peaks.values()),
    }


def period_fields(args: Any) -> dict[str, str]:
    """``--period``: the upload names the file's own span as its period (from its first row to just after its
    last: the same results as without), so the run knows its period before reading the file."""
    if not args.period:
        return {}
    last = START + timedelta(seconds=30 * 86_400 * (args.rows - 1) // args.rows, microseconds=1)
    return {"from": START.isoformat(), "to": last.isoformat()}


def period_options(args: Any) -> list[str]:
    fields = period_fields(args)
    return ["--from", fields["from"], "--to", fields["to"]] if fields else []


def through_api(client: httpx.Client, export: Path, headers: dict[str, str], env: dict[str, str], args: Any) -> Any:
    """Upload to the running server; the ``sav worker`` started here runs it: (rec, seconds, timings, the
    worker's peak RSS in MB)."""
    worker_log = args.logs / "worker.log"
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [SAV, "worker"], env=env | {"SAV_LOG_LEVEL": "INFO"}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        time.sleep(2)  # the worker's imports and first poll, before the clock starts
        started, epoch = time.perf_counter(), time.time()
        with export.open("rb") as data:
            response = client.post(
                "/v1/reconciliations",
                files={"file": (export.name, data, "text/csv")},
                data=period_fields(args),
                headers=headers,
            )
        if response.status_code != 202:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
        uploaded = time.perf_counter() - started
        rec, staged = wait_done(client, response.json()["reconciliation_id"], headers, args.timeout, args.rows, started)
        wall = time.perf_counter() - started
        worker_peak = peak_rss_mb(worker.pid)
    finally:
        stop(worker)
    timing = {
        "upload_seconds": round(uploaded, 2),
        "all_rows_staged_at_seconds": staged and round(staged, 2),
        "worker_marks": worker_marks(worker_log, epoch),
    }
    return rec, wall, timing, worker_peak


def worker_marks(log: Path, epoch: float) -> dict[str, float]:
    """The worker's own marks (job.py logs them at INFO: claimed, first batch staged, every row staged,
    done), as seconds since the upload began, from each line's time (millisecond resolution)."""
    marks: dict[str, float] = {}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("logger") == "sav.reconciliation":
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            marks[entry["msg"].split(": ", 1)[-1]] = round(at - epoch, 2)
    return marks


def through_cli(export: Path, env: dict[str, str], args: Any) -> tuple[str, float, float]:
    """``sav reconcile --file`` as its own process: (reconciliation id, seconds, its peak RSS in MB)."""
    stdout, stderr = args.logs / "cli.json", args.logs / "cli.log"
    started = time.perf_counter()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [SAV, "reconcile", "--file", str(export), "--json", "--quiet", *period_options(args)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        # wait4 reaps it with its own resource usage: ru_maxrss is its peak resident set, in KB.
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        raise RuntimeError(f"sav reconcile exited {code}: {stderr.read_text()[-2000:]}")
    return json.loads(stdout.read_text())["reconciliation_id"], wall, round(usage.ru_maxrss / 1024, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    name, dsn, url = new_database()
    args.logs.mkdir(parents=True, exist_ok=True)
    export = args.logs / f"export-{args.layout}.csv"
    server: subprocess.Popen[bytes] | None = None
    try:
        migrate(url)
        period, seeding = seed(dsn, export, args)
        seeding["export_mb"] = round(export.stat().st_size / 1e6, 1)
        print("seeded", json.dumps(seeding), flush=True)
        env = {
            **os.environ,
            "SAV_DATABASE_URL": url,
            "SAV_JWT_SECRET": SECRET,
            "SAV_ENV": "test",
            "SAV_LOG_LEVEL": "WARNING",
            "SAV_RUN_WORKER": "false",
            "SAV_WORKER_POLL_SECONDS": "0.2",
            "SAV_STRIPE_API_KEY": "",
            "SAV_ATTACHMENTS_DIR": str(args.logs / "attachments"),
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (args.logs / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [SAV, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        wait_ready(base, server)
        headers = {"Authorization": f"Bearer {token('finance', 'bench-finance')}"}
        out: dict[str, Any] = {"rows": args.rows, "breaks_per_kind": args.breaks, "layout": args.layout}
        out["seeding"] = seeding
        with httpx.Client(base_url=base, timeout=httpx.Timeout(600, connect=10)) as client:
            for path in args.paths:
                if path == "api":
                    rec, wall, timing, worker_peak = through_api(client, export, headers, env, args)
                    peaks = {"server": peak_rss_mb(server.pid), "worker": worker_peak}
                    out["api"] = result(rec, wall, args.rows, peaks) | timing
                else:
                    rec_id, wall, peak = through_cli(export, env, args)
                    rec = client.get(f"/v1/reconciliations/{rec_id}", headers=headers).json()
                    out["cli"] = result(rec, wall, args.rows, {"sav reconcile": peak})
                out[path]["check"] = check(client, rec, period, headers)
                print(path, json.dumps(out[path]), flush=True)
        return out
    finally:
        if server is not None:
            stop(server)
        if not args.keep:
            drop_database(name)
            export.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--breaks", type=int, default=1_000, help="injected breaks of each kind")
    parser.add_argument("--layout", choices=["dashboard", "itemized"], default="dashboard")
    parser.add_argument("--paths", default="api,cli", help="api, cli or both, in that order")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", action="store_true", help="give the file's own span as from/to")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the database and the export (to look at them)")
    parser.add_argument("--output", default="", help="where to write the JSON (default bench/results/)")
    args = parser.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.logs = ROOT / "bench" / "results" / f"reconciliation-logs-{stamp}"
    outcome: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **run(args)}
    out = args.output or str(ROOT / "bench" / "results" / f"reconciliation-{stamp}.json")
    with open(out, "w") as f:
        json.dump(outcome, f, indent=2)
    print("written", out)


if __name__ == "__main__":
    main()
