"""Reconciliation on SQLite (issue 13): ``sav reconcile --file`` against a ledger of ``--rows`` provider
rows with ``--breaks`` injected breaks of each kind, in a throwaway SQLite file.

    .venv/bin/python -m bench.reconciliation_sqlite --rows 100000 --breaks 100

The generator (devtools/reconciliation_data.py) writes the export and the ledger (loaded with bulk inserts,
not measured); the clock runs from the command's start to its exit. Prints seconds, rows/s, the command's
peak RSS and whether its counts equal the generator's.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.refunds import SAV
from bench.threads_scale import ROOT, SECRET
from devtools.reconciliation_data import LedgerTx, write_period

TX = "INSERT INTO ledger_transactions (id, kind, order_id, reference, provider_id, created_at) VALUES (?,?,?,?,?,?)"
ENTRY = (
    "INSERT INTO ledger_entries (transaction_id, account, order_id, party_id, amount, currency) VALUES (?,?,?,?,?,?)"
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sav-recon-sqlite-") as temporary:
        folder = args.keep or temporary
        db, export = Path(folder) / "sav.db", Path(folder) / "export.csv"
        env = {**os.environ, "SAV_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "SAV_JWT_SECRET": SECRET}
        env |= {"SAV_ENV": "test", "SAV_LOG_LEVEL": "WARNING", "SAV_STRIPE_API_KEY": ""}
        subprocess.run([SAV, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        with sqlite3.connect(db) as conn, export.open("w", encoding="utf-8", newline="") as out:

            def on_ledger(batch: list[LedgerTx]) -> None:
                # The ledger's times as SQLAlchemy stores them on SQLite (naive UTC, space-separated).
                conn.executemany(
                    TX,
                    [
                        (tx, kind, order, f"bench:{tx}", pid, at.strftime("%Y-%m-%d %H:%M:%S.%f"))
                        for tx, kind, pid, order, at, _ in batch
                    ],
                )
                conn.executemany(
                    ENTRY,
                    [
                        (tx, account, order, party, amount, currency)
                        for tx, _, _, order, _, entries in batch
                        for account, amount, currency, party in entries
                    ],
                )

            period = write_period(out, rows=args.rows, breaks=args.breaks, layout=args.layout, seed=args.seed,
                                  on_ledger=on_ledger)  # fmt: skip
        out_path, err_path = Path(folder) / "cli.json", Path(folder) / "cli.log"
        started = time.perf_counter()
        with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
            process = subprocess.Popen(
                [SAV, "reconcile", "--file", str(export), "--json", "--quiet"],
                env=env, cwd=ROOT, stdout=out_file, stderr=err_file,
            )  # fmt: skip
            # wait4 reaps it with its own resource usage: ru_maxrss is its peak resident set, in KB.
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) not in (0, 2):
            raise RuntimeError(f"sav reconcile failed: {err_path.read_text()[-2000:]}")
        rec = json.loads(out_path.read_text())
    return {
        "rows": args.rows,
        "breaks_per_kind": args.breaks,
        "status": rec["status"],
        "seconds": round(wall, 2),
        "rows_per_second": round(args.rows / wall),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "counts_equal": rec["counts"] == period.counts,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--breaks", type=int, default=100, help="injected breaks of each kind")
    parser.add_argument("--layout", choices=["dashboard", "itemized"], default="dashboard")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", default="", help="an empty folder to keep the database and the export in")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
