"""Escrow release benchmark (issue 12), on PostgreSQL, against the local Stripe-compatible server over HTTP.

1. ``throughput``: ``--orders`` due orders (delivered a month ago, escrow held, their capture on the
   ledger, their charge at the provider) of ``--shops`` shops with connected accounts, released by
   ``--workers`` ``sav worker`` processes through the real adapter (the official ``stripe`` SDK over HTTP)
   against the local server: releases per second until the last payout is ``paid``. Then the provider's
   transfers are listed page by page through ``GET /v1/transfers``: exactly one per order
   (``transfer_group`` = order id), each the amount of the order's payout and its ``provider_ref``.
2. ``scan``: one pass of the release scan and open (``app.payouts.release.open_payouts``: the due orders,
   locked, their payouts opened and their ledger posted) over a fixed batch of due orders, rolled back and
   repeated, with ~0 and then ``--released`` orders already released in the table (each with its paid
   payout and its capture, release and transfer ledger). Same per-pass cost within 1.5x, or the scan grows
   with history. ``EXPLAIN`` of the scan shows which index it reads.

Seeding is bulk SQL server-side (and one ``/_control/charges/bulk`` call at the provider): the benchmark
is about releasing, not seeding.

    .venv/bin/python -m bench.release --orders 10000 --shops 100 --workers 2 --released 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.refunds import SAV, STRIPE_KEY, start_workers, stop_all
from bench.threads_scale import ADMIN, ROOT, SECRET
from devtools.stripe_server.process import start as start_stripe_server

TOTAL, COMMISSION = 5_000, 500  # minor units: each order 50.00 EUR, the shop's share 45.00
HOLD = timedelta(days=14)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    ram = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(ram / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# --- seeding (server-side SQL) ---------------------------------------------------------------------------


def seed_shops(conn: psycopg.Connection[Any], shops: int) -> None:
    conn.execute(
        "INSERT INTO sellers (id, name, stripe_account_id, refund_on, created_at, updated_at) "
        "SELECT 'shop-' || g, 'Shop ' || g, 'acct_bench_' || g, 'receipt', now(), now() "
        "FROM generate_series(0, %s - 1) g",
        (shops,),
    )


def seed_orders(conn: psycopg.Connection[Any], prefix: str, count: int, shops: int, *, released: bool) -> None:
    """``count`` delivered orders ``{prefix}-{n}`` (charge ``ch_{prefix}_{n}``), spread over the shops, with
    their capture on the ledger. ``released``: already released and paid, as a worker leaves them (payout
    ``paid``, ledger ``release`` and ``transfer_paid``), for the history the scan must not read."""
    params = {"prefix": prefix, "n": count, "shops": shops, "total": TOTAL, "commission": COMMISSION}
    status = "released" if released else "held"
    conn.execute(
        "INSERT INTO orders (id, buyer_id, seller_id, currency, total_amount, commission_amount, payment_provider, "
        "charge_id, delivered_at, escrow_status, revision, created_at, updated_at) "
        "SELECT %(prefix)s || '-' || g, 'buyer-' || g, 'shop-' || (g %% %(shops)s), 'EUR', %(total)s, "
        "%(commission)s, 'stripe', 'ch_' || %(prefix)s || '_' || g, "
        "now() - interval '30 days' + g * interval '1 millisecond', "
        f"'{status}', 0, now() - interval '40 days', now() "
        "FROM generate_series(0, %(n)s - 1) g",
        params,
    )
    # Ledger transactions: (kind, reference suffix, provider id); their ids are derived, so entries can join.
    kinds = [("capture", "order:' || o || ':capture:0", "'ch_' || %(prefix)s || '_' || g")]
    if released:
        conn.execute(
            "INSERT INTO payouts (id, seller_id, order_id, amount, currency, debt_netted, reversed, status, "
            "provider_ref, attempts, next_attempt_at, created_at, released_at, paid_at) "
            "SELECT 'po_' || md5(%(prefix)s || g), 'shop-' || (g %% %(shops)s), %(prefix)s || '-' || g, "
            "%(total)s - %(commission)s, 'EUR', 0, 0, 'paid', 'tr_' || md5(%(prefix)s || g), 1, now(), "
            "now() - interval '10 days', now() - interval '10 days', now() - interval '10 days' "
            "FROM generate_series(0, %(n)s - 1) g",
            params,
        )
        kinds += [
            ("release", "payout:po_' || md5(%(prefix)s || g) || ':release", "NULL"),
            ("transfer_paid", "payout:po_' || md5(%(prefix)s || g) || ':paid", "'tr_' || md5(%(prefix)s || g)"),
        ]
    for kind, reference, provider in kinds:
        conn.execute(
            "INSERT INTO ledger_transactions (id, kind, order_id, reference, provider_id, created_at) "
            f"SELECT md5('{kind}' || o)::uuid::text, '{kind}', o, '{reference}', {provider}, now() "
            "FROM (SELECT g, %(prefix)s || '-' || g AS o FROM generate_series(0, %(n)s - 1) g) s",
            params,
        )
    entries = [  # (kind, account, amount, party is the shop)
        ("capture", "provider_balance", TOTAL, False),
        ("capture", "escrow", -TOTAL, False),
    ]
    if released:
        entries += [
            ("release", "escrow", TOTAL, False),
            ("release", "platform_commission", -COMMISSION, False),
            ("release", "transfers_in_flight", -(TOTAL - COMMISSION), True),
            ("transfer_paid", "transfers_in_flight", TOTAL - COMMISSION, True),
            ("transfer_paid", "provider_balance", -(TOTAL - COMMISSION), False),
        ]
    for kind, account, amount, party in entries:
        conn.execute(
            "INSERT INTO ledger_entries (transaction_id, account, order_id, party_id, amount, currency) "
            f"SELECT md5('{kind}' || o)::uuid::text, '{account}', o, "
            f"{'s' if party else 'NULL'}, {amount}, 'EUR' "
            "FROM (SELECT %(prefix)s || '-' || g AS o, 'shop-' || (g %% %(shops)s) AS s "
            "FROM generate_series(0, %(n)s - 1) g) x",
            params,
        )


def new_database() -> tuple[str, str, str]:
    name = f"sav_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    env = {**os.environ, "SAV_DATABASE_URL": url, "SAV_JWT_SECRET": SECRET, "SAV_ENV": "test"}
    subprocess.run([SAV, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)


# --- 1. throughput ---------------------------------------------------------------------------------------


def paid_count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'paid'), count(*) FILTER (WHERE status NOT IN ('paid', 'pending')) "
            "FROM payouts"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def provider_transfers(stripe_url: str) -> list[dict[str, Any]]:
    """Every transfer at the provider, through Stripe's own list (newest first, 100 a page)."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=stripe_url, headers={"Authorization": f"Bearer {STRIPE_KEY}"}, timeout=60) as stripe:
        after = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"starting_after": after} if after else {})}
            page = stripe.get("/v1/transfers", params=params).json()
            found += page["data"]
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]


def check_transfers(dsn: str, stripe_url: str, orders: int) -> dict[str, Any]:
    transfers = provider_transfers(stripe_url)
    per_group: dict[str, list[dict[str, Any]]] = {}
    for transfer in transfers:
        per_group.setdefault(transfer["transfer_group"], []).append(transfer)
    with psycopg.connect(dsn) as conn:
        payouts = conn.execute("SELECT order_id, status, amount, provider_ref FROM payouts").fetchall()
        ledger = conn.execute(
            "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_transactions t "
            "ON t.id = e.transaction_id WHERE t.kind = 'transfer_paid' AND e.account = 'provider_balance'"
        ).fetchone()
    assert ledger is not None
    mismatched = [
        order_id
        for order_id, status, amount, ref in payouts
        if status != "paid"
        or len(per_group.get(order_id, [])) != 1
        or per_group[order_id][0]["id"] != ref
        or per_group[order_id][0]["amount"] != amount
    ]
    duplicates = sum(len(group) - 1 for group in per_group.values() if len(group) > 1)
    return {
        "payouts": len(payouts),
        "payouts_paid": sum(1 for p in payouts if p[1] == "paid"),
        "provider_transfers": len(transfers),
        "provider_groups": len(per_group),
        "duplicate_transfers": duplicates,
        "provider_amount": sum(t["amount"] for t in transfers),
        "ledger_transferred": -int(ledger[0]),
        "mismatched_orders": mismatched[:10],
        "ok": not mismatched
        and duplicates == 0
        and len(payouts) == len(transfers) == len(per_group) == orders
        and sum(t["amount"] for t in transfers) == -int(ledger[0]) == orders * (TOTAL - COMMISSION),
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    name, dsn, url = new_database()
    stripe_process, stripe_url = start_stripe_server()
    logs = ROOT / "bench" / "results" / f"release-logs-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True, exist_ok=True)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        migrate(url)
        started = time.perf_counter()
        with httpx.Client(base_url=stripe_url, timeout=300) as control:
            for n in range(args.shops):
                control.post("/_control/accounts", json={"id": f"acct_bench_{n}", "type": "express"}).raise_for_status()
            made = control.post(
                "/_control/charges/bulk",
                json={"id_prefix": "ch_due_", "count": args.orders, "amount": TOTAL, "currency": "eur"},
            )
            made.raise_for_status()
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_shops(conn, args.shops)
            seed_orders(conn, "due", args.orders, args.shops, released=False)
            conn.execute("VACUUM (ANALYZE)")
        seeded = time.perf_counter() - started
        print(f"seeded {args.orders} due orders in {seeded:.1f}s", flush=True)
        env = {
            **os.environ,
            "SAV_DATABASE_URL": url,
            "SAV_JWT_SECRET": SECRET,
            "SAV_ENV": "test",
            "SAV_LOG_LEVEL": "WARNING",
            "SAV_STRIPE_API_KEY": STRIPE_KEY,
            "SAV_STRIPE_API_BASE": stripe_url,
            "SAV_WORKER_POLL_SECONDS": str(args.poll),
            "SAV_ESCROW_HOLD_SECONDS": str(int(HOLD.total_seconds())),
        }
        started = time.monotonic()
        workers = start_workers(args.workers, env, logs)
        deadline = started + args.timeout
        while True:
            paid, other = paid_count(dsn)
            if paid + other >= args.orders or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        wall = time.monotonic() - started
        stop_all(workers)
        workers = []
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(paid_at) - min(released_at)) FROM payouts WHERE status = 'paid'"
            ).fetchone()
        active = float(row[0]) if row and row[0] is not None else float("nan")
        return {
            "orders": args.orders,
            "shops": args.shops,
            "workers": args.workers,
            "poll_seconds": args.poll,
            "seed_seconds": round(seeded, 1),
            "paid": paid,
            "not_paid": args.orders - paid,
            "seconds_from_spawn": round(wall, 2),
            "releases_per_second_from_spawn": round(paid / wall, 1),
            "seconds_first_open_to_last_paid": round(active, 2),
            "releases_per_second": round(paid / active, 1) if active > 0 else None,
            "check": check_transfers(dsn, stripe_url, args.orders),
            "worker_logs": str(logs),
        }
    finally:
        stop_all(workers)
        stripe_process.terminate()
        stripe_process.wait(10)
        drop_database(name)


# --- 2. the scan at ~0 and at --released already-released orders ------------------------------------------


async def time_passes(url: str, passes: int, batch: int) -> dict[str, Any]:
    """``passes`` times: open the payouts of ``batch`` due orders in one transaction, then roll it back
    (the same due orders every time). Median and spread in milliseconds, after 5 warm-up passes."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from app.db import utcnow
    from app.payouts.release import open_payouts

    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    samples: list[float] = []
    try:
        for n in range(passes + 5):
            async with sessions() as session:
                transaction = await session.begin()
                begun = time.perf_counter()
                opened = await open_payouts(session, now=utcnow(), hold=HOLD, batch=batch)
                await session.flush()
                elapsed = (time.perf_counter() - begun) * 1000
                await transaction.rollback()
            if opened != batch:
                raise RuntimeError(f"a pass opened {opened} payouts, not {batch}")
            if n >= 5:
                samples.append(elapsed)
    finally:
        await engine.dispose()
    return {
        "passes": passes,
        "batch": batch,
        "median_ms": round(statistics.median(samples), 2),
        "min_ms": round(min(samples), 2),
        "max_ms": round(max(samples), 2),
        "per_order_ms": round(statistics.median(samples) / batch, 3),
    }


def explain_scan(dsn: str, batch: int) -> list[str]:
    """The scan as ``open_payouts`` sends it, compiled by SQLAlchemy for PostgreSQL, under EXPLAIN ANALYZE."""
    from sqlalchemy.dialects import postgresql

    from app.db import utcnow
    from app.orders.models import Order
    from app.payouts.release import due_orders

    query = (
        due_orders(now=utcnow(), hold=HOLD)
        .order_by(Order.delivered_at, Order.id)
        .limit(batch)
        .with_for_update(skip_locked=True, of=Order)
    )
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))  # type: ignore[no-untyped-call]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).fetchall()  # type: ignore[call-overload]
        conn.rollback()
    return [str(r[0]) for r in rows]


def scan(args: argparse.Namespace) -> dict[str, Any]:
    name, dsn, url = new_database()
    try:
        migrate(url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_shops(conn, args.shops)
            seed_orders(conn, "due", args.scan_due, args.shops, released=False)
            conn.execute("VACUUM (ANALYZE)")
        small = asyncio.run(time_passes(url, args.passes, args.scan_batch))
        small_plan = explain_scan(dsn, args.scan_batch)
        print("scan, ~0 released:", small, flush=True)
        started = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            step = 250_000
            for start in range(0, args.released, step):
                with conn.transaction():
                    size = min(step, args.released - start)
                    seed_orders(conn, f"old{start // step}", size, args.shops, released=True)
            conn.execute("VACUUM (ANALYZE)")
            sizes = conn.execute(
                "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM payouts), "
                "(SELECT count(*) FROM ledger_entries)"
            ).fetchone()
        seeded = time.perf_counter() - started
        large = asyncio.run(time_passes(url, args.passes, args.scan_batch))
        large_plan = explain_scan(dsn, args.scan_batch)
        print("scan, released:", large, flush=True)
        assert sizes is not None
        return {
            "due_orders": args.scan_due,
            "released_orders": args.released,
            "seed_released_seconds": round(seeded, 1),
            "table_sizes_large": {"orders": sizes[0], "payouts": sizes[1], "ledger_entries": sizes[2]},
            "small": small,
            "large": large,
            "ratio_large_small": round(large["median_ms"] / small["median_ms"], 2),
            "index_used": all("ix_orders_release_due" in "\n".join(p) for p in (small_plan, large_plan)),
            "explain_small": small_plan,
            "explain_large": large_plan,
        }
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="throughput,scan")
    parser.add_argument("--orders", type=int, default=10_000, help="due orders released by the workers")
    parser.add_argument("--shops", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="`sav worker` processes")
    parser.add_argument("--poll", type=float, default=0.2, help="SAV_WORKER_POLL_SECONDS")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--released", type=int, default=1_000_000, help="already-released orders (scan phase)")
    parser.add_argument("--scan-due", type=int, default=1_000, help="due orders in the table (scan phase)")
    parser.add_argument("--scan-batch", type=int, default=50, help="due orders opened per timed pass")
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--output", default="", help="where to write the JSON (default bench/results/)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "throughput" in phases:
        result["throughput"] = throughput(args)
        print("throughput", json.dumps(result["throughput"], indent=2), flush=True)
    if "scan" in phases:
        result["scan"] = scan(args)
        print("scan ratio", result["scan"]["ratio_large_small"], "index used", result["scan"]["index_used"], flush=True)
    out = args.output or str(ROOT / "bench" / "results" / f"release-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print("written", out)


if __name__ == "__main__":
    main()
