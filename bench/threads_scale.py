"""Threads benchmarks (issue 3), on PostgreSQL.

1. Message write path: wrk POSTs messages (auth + policy + insert + thread update) against the same
   server's /health in the same run, so the ratio to the framework ceiling is meaningful.
2. Inbox and message pages at scale: the database is filled server-side (generate_series) with
   1 000 threads / 10 000 messages, then 1 000 000 threads / 10 000 000 messages; the same requests are
   timed one at a time through HTTP at both sizes. A keyset-paginated, index-backed list costs the same
   whatever the table holds; the ratio large/small says whether it does.

    .venv/bin/python -m bench.threads_scale --scale small,large --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-secret-0123456789-0123456789-0123456789"
SCALES = {"small": (1_000, 10), "large": (1_000_000, 10)}  # threads, messages per thread
BIG_SHOP_THREADS = {"small": 500, "large": 10_000}


def token(role: str, sub: str, seller_id: str = "") -> str:
    from app.auth import issue_token
    from app.settings import load_settings

    settings = load_settings({"SAV_JWT_SECRET": SECRET}, dotenv=None)
    return issue_token(settings, sub=sub, role=role, seller_id=seller_id, ttl_seconds=7200)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(dsn: str, threads: int, per_thread: int, big_shop: int) -> float:
    """Fill the database server-side; returns seconds taken."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sellers (id, name, refund_on, created_at, updated_at) "
            "SELECT 'shop-' || g, 'Shop ' || g, 'receipt', now(), now() FROM generate_series(0, 1999) g "
            "UNION ALL SELECT 'shop-big', 'Big shop', 'receipt', now(), now()"
        )
        # Threads: the first `big_shop` belong to shop-big, the first 50 of those to buyer-50; the rest
        # are spread over 2 000 shops and 200 000 buyers. Activity dates are scattered over ~12 days.
        conn.execute(
            """
            INSERT INTO threads (id, audience, subject, order_id, buyer_id, seller_id, dispute_id, created_by,
                                 created_at, last_message_at, message_count, last_author_party)
            SELECT 'thr_' || lpad(g::text, 12, '0'),
                   (ARRAY['tripartite','buyer_seller','operator_seller','buyer_seller','tripartite'])[1 + g %% 5],
                   'Subject ' || g, NULL,
                   CASE WHEN g <= 50 THEN 'buyer-50' ELSE 'buyer-' || (g %% 200000) END,
                   CASE WHEN g <= %(big)s THEN 'shop-big' ELSE 'shop-' || (g %% 2000) END,
                   NULL, 'seed', now() - interval '30 days',
                   now() - ((g::bigint * 7919) %% 1000000) * interval '1 second', %(per)s, 'buyer'
            FROM generate_series(1, %(n)s) g
            """,
            {"n": threads, "per": per_thread, "big": big_shop},
        )
        conn.execute(
            """
            INSERT INTO messages (id, thread_id, seq, author_id, author_role, author_name, body, created_at)
            SELECT 'msg_' || t || '_' || s, 'thr_' || lpad(t::text, 12, '0'), s,
                   CASE WHEN s %% 2 = 1 THEN 'buyer-' || t ELSE 'seller-' || t END,
                   CASE WHEN s %% 2 = 1 THEN 'buyer' ELSE 'seller' END, 'Someone',
                   'Bonjour, message ' || s || ' du fil ' || t || ' : le colis est arrivé abîmé.',
                   now() - interval '20 days' + s * interval '1 minute'
            FROM generate_series(1, %(n)s) t, generate_series(1, %(per)s) s
            """,
            {"n": threads, "per": per_thread},
        )
        # Settle the tables as a long-running database would be (and keep autovacuum out of the timings).
        conn.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - started


class Server:
    def __init__(self, database_url: str, workers: int = 1, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SAV_DATABASE_URL": database_url,
            "SAV_JWT_SECRET": SECRET,
            "SAV_LOG_LEVEL": "WARNING",
            "SAV_RUN_WORKER": "false",
            "SAV_ENV": "test",
            "SAV_DATABASE_POOL_SIZE": "20",
            **extra_env,
        }
        sav = str(Path(sys.executable).parent / "sav")
        self.process = subprocess.Popen(
            [sav, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def time_requests(base: str, path: str, headers: dict[str, str], count: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        for _ in range(20):
            (await client.get(path)).raise_for_status()
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(percentile(samples, 95), 2),
        "p99_ms": round(percentile(samples, 99), 2),
    }


def read_scenarios(base: str) -> dict[str, tuple[str, dict[str, str]]]:
    seller = {"Authorization": "Bearer " + token("seller", "member-big", "shop-big")}
    buyer = {"Authorization": "Bearer " + token("buyer", "buyer-50")}
    agent = {"Authorization": "Bearer " + token("agent", "agent-bench")}
    page = httpx.get(base + "/v1/threads?limit=50", headers=seller).json()
    cursor = page["next_cursor"]
    return {
        "seller inbox, first page (50)": ("/v1/threads?limit=50", seller),
        "seller inbox, next page (cursor)": (f"/v1/threads?limit=50&cursor={cursor}", seller),
        "seller inbox, unread only": ("/v1/threads?limit=50&unread=true", seller),
        "buyer inbox (50 threads)": ("/v1/threads?limit=50", buyer),
        "operator inbox, first page": ("/v1/threads?limit=50", agent),
        "message page (thread of 10)": ("/v1/threads/thr_000000000001/messages?limit=50", seller),
    }


# The statements behind the inbox and message pages, as the service sends them (SQLAlchemy compiles the
# same shapes), timed inside PostgreSQL: free of HTTP and client noise, this is what must not grow.
DB_QUERIES = {
    "seller inbox": (
        "SELECT t.id, t.message_count - coalesce(rc.last_read_seq, 0) FROM threads t LEFT JOIN read_cursors rc "
        "ON rc.thread_id = t.id AND rc.reader = 'seller:shop-big:member-big' WHERE t.seller_id = 'shop-big' "
        "AND t.audience IN ('tripartite', 'buyer_seller', 'operator_seller') "
        "ORDER BY t.last_message_at DESC, t.id DESC LIMIT 51"
    ),
    "buyer inbox": (
        "SELECT t.id, t.message_count - coalesce(rc.last_read_seq, 0) FROM threads t LEFT JOIN read_cursors rc "
        "ON rc.thread_id = t.id AND rc.reader = 'buyer::buyer-50' WHERE t.buyer_id = 'buyer-50' "
        "AND t.audience IN ('tripartite', 'buyer_seller', 'operator_buyer') "
        "ORDER BY t.last_message_at DESC, t.id DESC LIMIT 51"
    ),
    "message page": ("SELECT * FROM messages WHERE thread_id = 'thr_000000000001' AND seq > 0 ORDER BY seq LIMIT 51"),
}


def db_timings(dsn: str, runs: int = 200) -> dict[str, dict[str, float]]:
    timings: dict[str, dict[str, float]] = {}
    with psycopg.connect(dsn) as conn:
        for label, sql in DB_QUERIES.items():
            samples = []
            for _ in range(runs):
                plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0]  # type: ignore[index]
                samples.append(plan[0]["Execution Time"])
            timings[label] = {
                "p50_ms": round(statistics.median(samples), 3),
                "p95_ms": round(percentile(samples, 95), 3),
            }
    return timings


def explain(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT t.id FROM threads t LEFT JOIN read_cursors rc "
            "ON rc.thread_id = t.id AND rc.reader = 'seller:shop-big:member-big' "
            "WHERE t.seller_id = 'shop-big' AND t.audience IN ('tripartite','buyer_seller','operator_seller') "
            "ORDER BY t.last_message_at DESC, t.id DESC LIMIT 51"
        ).fetchall()
    return "\n".join(r[0] for r in rows)


WRK_POST = """
local threads = {%s}
local token = "%s"
local n = 0
request = function()
  n = n + 1
  local thread = threads[(n %% #threads) + 1]
  return wrk.format("POST", "/v1/threads/" .. thread .. "/messages",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    '{"body": "Bonjour, nous regardons votre demande (' .. n .. ')."}')
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\": %%f, \\"p95\\": %%f, \\"p99\\": %%f}\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""
WRK_GET = (
    WRK_POST.split("local threads")[0]
    + """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\": %f, \\"p95\\": %f, \\"p99\\": %f}\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""
)


def wrk(url: str, script: str, duration: int, connections: int) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    return {"rps": round(rps), "non_2xx": int(non2xx.group(1)) if non2xx else 0, **latency}


def write_benchmark(server: Server, duration: int, connections: int) -> dict[str, Any]:
    thread_ids = ",".join(f'"thr_{i:012d}"' for i in range(1, 1001))
    agent = token("agent", "agent-bench")
    wrk(server.url + "/health", WRK_GET, 2, connections)  # warm-up
    health = wrk(server.url + "/health", WRK_GET, duration, connections)
    post = wrk(server.url, WRK_POST % (thread_ids, agent), duration, connections)
    return {"health": health, "post_message": post, "ratio": round(post["rps"] / health["rps"], 3)}


def run(scales: list[str], duration: int, connections: int, requests: int, write: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for scale in scales:
        name = f"sav_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        try:
            subprocess.run(
                [str(Path(sys.executable).parent / "sav"), "migrate"],
                env={**os.environ, "SAV_DATABASE_URL": url},
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            threads, per = SCALES[scale]
            seconds = seed(dsn, threads, per, BIG_SHOP_THREADS[scale])
            print(f"[{scale}] seeded {threads:,} threads / {threads * per:,} messages in {seconds:.0f}s", flush=True)
            server = Server(url)
            try:
                reads = {
                    label: asyncio.run(time_requests(server.url, path, headers, requests))
                    for label, (path, headers) in read_scenarios(server.url).items()
                }
                for label, figures in reads.items():
                    print(f"[{scale}] {label:<36} {figures}", flush=True)
                entry: dict[str, Any] = {"reads": reads, "plan": explain(dsn), "db": db_timings(dsn)}
                for label, figures in entry["db"].items():
                    print(f"[{scale}] in PostgreSQL: {label:<24} {figures}", flush=True)
                results[scale] = entry
            finally:
                server.stop()
            if scale == scales[0] and write:
                entry["write"] = {}
                for workers in (1, 2):
                    server = Server(url, workers=workers)
                    try:
                        entry["write"][workers] = write_benchmark(server, duration, connections)
                    finally:
                        server.stop()
                    print(f"[{scale}] write path, {workers} worker(s): {entry['write'][workers]}", flush=True)
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if {"small", "large"} <= results.keys():
        for kind in ("reads", "db"):
            for label in results["small"][kind]:
                ratio = results["large"][kind][label]["p95_ms"] / results["small"][kind][label]["p95_ms"]
                print(f"p95 large/small ({kind}) {label:<36} {ratio:.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small,large")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="skip the write-path benchmark")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    results = run(args.scale.split(","), args.duration, args.connections, args.requests, not args.no_write)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"threads-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
