"""Refunds benchmark (issue 6), on PostgreSQL, against the local Stripe-compatible server over HTTP.

1. API: ``POST /v1/refunds`` (partial refunds, one per order, each with its Idempotency-Key) from
   ``--clients`` concurrent keep-alive connections, no worker running: latency p50/p95/p99 and req/s.
2. Workers: ``--workers`` ``sav worker`` processes pay the refunds granted in 1 through the real Stripe
   adapter: refunds settled per second, from their start to the last ``succeeded``.
3. End to end: workers already running, a fresh set of orders refunded through the API at full speed:
   refunds per second from the first request to the last ``succeeded`` (goal: at least 200/s).

After each phase the provider's refunded total is compared with our ledger's (they must be equal) and the
provider's refund count with ours (no refund paid twice).

    .venv/bin/python -m bench.refunds --refunds 2000 --clients 16 --workers 2 --api-processes 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.realtime import Poster
from bench.threads_scale import ADMIN, ROOT, SECRET, Server, percentile, token
from devtools.stripe_server.process import start as start_stripe_server

STRIPE_KEY = "sk_test_bench_0123456789"
SAV = str(Path(sys.executable).parent / "sav")
ORDER_TOTAL = 5_000
REFUND = 1_200


async def seed_orders(server: Server, stripe_url: str, prefix: str, count: int) -> list[str]:
    """A charge at the provider and the order pushed for it, ``count`` times."""
    marketplace = {"Authorization": f"Bearer {token('marketplace', 'bench-marketplace')}"}
    order_ids = [f"{prefix}-{n}" for n in range(count)]
    limit = asyncio.Semaphore(16)
    async with (
        httpx.AsyncClient(base_url=stripe_url, timeout=30) as stripe,
        httpx.AsyncClient(base_url=server.url, headers=marketplace, timeout=30) as api,
    ):
        seller = await api.put("/v1/sellers/shop-bench", json={"name": "Bench shop"})
        assert seller.status_code in (200, 201), seller.text

        async def one(order_id: str) -> None:
            async with limit:
                charge_id = f"ch_{order_id.replace('-', '_')}"
                made = await stripe.post(
                    "/_control/charges", data={"id": charge_id, "amount": ORDER_TOTAL, "currency": "eur"}
                )
                made.raise_for_status()
                body = {
                    "buyer_id": f"buyer-{order_id}",
                    "seller_id": "shop-bench",
                    "currency": "EUR",
                    "total": {"amount": ORDER_TOTAL, "currency": "EUR"},
                    "commission": {"amount": ORDER_TOTAL // 10, "currency": "EUR"},
                    "lines": [
                        {
                            "line_id": "l1",
                            "sku": "SKU",
                            "title": "Kettle",
                            "quantity": 1,
                            "unit_price": {"amount": ORDER_TOTAL, "currency": "EUR"},
                        }
                    ],
                    "payment": {"provider": "stripe", "charge_id": charge_id},
                }
                response = await api.put(f"/v1/orders/{order_id}", json=body)
                assert response.status_code == 201, response.text

        await asyncio.gather(*(one(o) for o in order_ids))
    return order_ids


async def grant_all(server: Server, order_ids: list[str], clients: int) -> dict[str, Any]:
    jwt = token("arbitrator", "bench-arbitrator")
    poster = Poster(server.port)
    await poster.open(clients)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for order_id in order_ids:
        queue.put_nowait(order_id)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client() -> None:
        while not queue.empty():
            order_id = queue.get_nowait()
            body = {
                "order_id": order_id,
                "kind": "partial",
                "amount": {"amount": REFUND, "currency": "EUR"},
                "funded_by": "seller",
                "reason": "bench",
            }
            started = time.perf_counter()
            status = await poster.post("/v1/refunds", body, jwt, {"Idempotency-Key": uuid.uuid4().hex})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await poster.close()
    return {
        "requests": len(latencies),
        "statuses": statuses,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


def count(dsn: str, prefix: str, status: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM refunds WHERE order_id LIKE %s AND status = %s", (f"{prefix}-%", status)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_paid(dsn: str, prefix: str, total: int, timeout: float = 600) -> float:
    """Seconds until every refund of these orders left ``pending``; returns the monotonic end time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            count(dsn, prefix, "pending") == 0
            and count(dsn, prefix, "succeeded") + count(dsn, prefix, "failed") == total
        ):
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"refunds of {prefix} still pending after {timeout}s")


def check_money(dsn: str, stripe_url: str, prefix: str) -> dict[str, Any]:
    """Ours (ledger and refund rows) against the provider's (its refunds, listed page by page)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0), count(DISTINCT provider_ref) FROM refunds "
            "WHERE order_id LIKE %s AND status = 'succeeded'",
            (f"{prefix}-%",),
        ).fetchone()
        ledger = conn.execute(
            "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_transactions t "
            "ON t.id = e.transaction_id WHERE t.kind = 'refund_paid' AND e.account = 'provider_balance' "
            "AND t.order_id LIKE %s",
            (f"{prefix}-%",),
        ).fetchone()
    assert row is not None
    assert ledger is not None
    provider_count = provider_amount = 0
    charge_prefix = f"ch_{prefix.replace('-', '_')}_"
    with httpx.Client(base_url=stripe_url, headers={"Authorization": f"Bearer {STRIPE_KEY}"}, timeout=30) as stripe:
        after = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"starting_after": after} if after else {})}
            page = stripe.get("/v1/refunds", params=params).json()
            for refund in page["data"]:
                if str(refund["charge"]).startswith(charge_prefix):
                    provider_count += 1
                    provider_amount += refund["amount"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
    return {
        "ours_succeeded": int(row[0]),
        "ours_amount": int(row[1]),
        "ledger_paid_out": -int(ledger[0]),
        "provider_refunds": provider_count,
        "provider_amount": provider_amount,
        "equal": int(row[1]) == -int(ledger[0]) == provider_amount and int(row[0]) == provider_count == int(row[2]),
    }


def start_workers(n: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(n):
        with (logs / f"worker-{i}.log").open("wb") as out:
            workers.append(subprocess.Popen([SAV, "worker"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
    return workers


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refunds", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="`sav worker` processes paying refunds")
    parser.add_argument("--api-processes", type=int, default=1, help="uvicorn worker processes serving the API")
    args = parser.parse_args()
    name = f"sav_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    stripe_process, stripe_url = start_stripe_server()
    logs = ROOT / "bench" / "results" / f"refunds-logs-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SAV_DATABASE_URL": url,
        "SAV_JWT_SECRET": SECRET,
        "SAV_ENV": "test",
        "SAV_LOG_LEVEL": "WARNING",
        "SAV_STRIPE_API_KEY": STRIPE_KEY,
        "SAV_STRIPE_API_BASE": stripe_url,
        "SAV_WORKER_POLL_SECONDS": "0.2",
    }
    workers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([SAV, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        server = Server(url, args.api_processes, SAV_STRIPE_API_KEY=STRIPE_KEY, SAV_STRIPE_API_BASE=stripe_url)
        try:
            result: dict[str, Any] = {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "refunds": args.refunds,
                "clients": args.clients,
                "workers": args.workers,
                "api_processes": args.api_processes,
            }
            orders = asyncio.run(seed_orders(server, stripe_url, "api", args.refunds))
            result["api"] = asyncio.run(grant_all(server, orders, args.clients))
            print("api", result["api"], flush=True)

            started = time.monotonic()
            workers = start_workers(args.workers, env, logs)
            done = wait_paid(dsn, "api", args.refunds)
            result["workers_only"] = {
                "seconds": round(done - started, 2),
                "refunds_per_second": round(args.refunds / (done - started), 1),
                "money": check_money(dsn, stripe_url, "api"),
            }
            print("workers", result["workers_only"], flush=True)

            orders = asyncio.run(seed_orders(server, stripe_url, "e2e", args.refunds))
            started = time.monotonic()
            granted = asyncio.run(grant_all(server, orders, args.clients))
            done = wait_paid(dsn, "e2e", args.refunds)
            result["end_to_end"] = {
                "api": granted,
                "seconds": round(done - started, 2),
                "refunds_per_second": round(args.refunds / (done - started), 1),
                "money": check_money(dsn, stripe_url, "e2e"),
            }
            print("end to end", result["end_to_end"], flush=True)
        finally:
            stop_all(workers)
            server.stop()
        print(json.dumps(result, indent=2))
        (ROOT / "bench" / "results" / f"refunds-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
            json.dumps(result, indent=2)
        )
    finally:
        stripe_process.terminate()
        stripe_process.wait(10)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
