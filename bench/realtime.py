"""Real-time benchmark (issue 4): post-to-receive latency and server CPU per delivered event.

500 WebSocket clients watch 200 threads the way a marketplace does: each thread's buyer and shop member
(2 watchers), a third watcher on a quarter of the threads (a second shop member), a few operator agents
who see everything, and idle buyers with no thread. Messages are posted at a fixed rate through HTTP;
each watcher timestamps the matching message.created event. Latency is measured from the moment the
POST is sent. The server's CPU time (from /proc) divided by the events it delivered gives the cost of
one delivery.

    .venv/bin/python -m bench.realtime --rate 200 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from websockets.asyncio.client import connect

from bench.threads_scale import ADMIN, ROOT, Server, percentile, token

THREADS = 200
OPERATORS = 5
IDLE_BUYERS = 45


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sellers (id, name, refund_on, created_at, updated_at) "
            "SELECT 'shop-' || g, 'Shop ' || g, 'receipt', now(), now() FROM generate_series(1, %(n)s) g",
            {"n": THREADS},
        )
        conn.execute(
            """
            INSERT INTO threads (id, audience, subject, order_id, buyer_id, seller_id, dispute_id, created_by,
                                 created_at, last_message_at, message_count, last_author_party)
            SELECT 'thr_rt_' || g, 'buyer_seller', 'Subject ' || g, NULL, 'buyer-' || g, 'shop-' || g, NULL,
                   'seed', now(), now(), 0, NULL
            FROM generate_series(1, %(n)s) g
            """,
            {"n": THREADS},
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Watchers:
    def __init__(self) -> None:
        self.received: dict[str, list[float]] = {}
        self.deliveries = 0

    async def watch(self, url: str, jwt: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
        async with connect(f"{url}?token={jwt}", max_size=2**22) as ws:
            await ws.recv()  # ready frame
            ready.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.perf_counter()
                event = json.loads(raw)
                if event.get("type") == "message.created":
                    self.deliveries += 1
                    self.received.setdefault(event["data"]["body"], []).append(now)


async def drive(server: Server, rate: int, duration: int) -> dict[str, Any]:
    ws_url = server.url.replace("http://", "ws://") + "/v1/ws"
    sockets: list[str] = []
    for g in range(1, THREADS + 1):
        sockets.append(token("buyer", f"buyer-{g}"))
        sockets.append(token("seller", f"member-{g}", f"shop-{g}"))
        if g % 4 == 0:
            sockets.append(token("seller", f"member-b-{g}", f"shop-{g}"))
    sockets += [token("agent", f"agent-{i}") for i in range(OPERATORS)]
    sockets += [token("buyer", f"idle-{i}") for i in range(IDLE_BUYERS)]
    watchers, stop = Watchers(), asyncio.Event()
    readies = [asyncio.Event() for _ in sockets]
    tasks = [
        asyncio.create_task(watchers.watch(ws_url, jwt, ready, stop))
        for jwt, ready in zip(sockets, readies, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    posters = {g: token("buyer", f"buyer-{g}") for g in range(1, THREADS + 1)}
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    pid = server.process.pid
    cpu_before = cpu_seconds(pid)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=64)) as http:

        async def post(n: int) -> None:
            g = n % THREADS + 1
            body = f"m-{n}-{uuid.uuid4().hex[:6]}"
            sent[body] = time.perf_counter()
            response = await http.post(
                f"/v1/threads/thr_rt_{g}/messages",
                json={"body": body},
                headers={"Authorization": f"Bearer {posters[g]}"},
            )
            acked[body] = time.perf_counter()
            response.raise_for_status()

        started = time.perf_counter()
        inflight = []
        for n in range(rate * duration):
            target = started + n / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            inflight.append(asyncio.create_task(post(n)))
        await asyncio.gather(*inflight)
    await asyncio.sleep(2)
    cpu_used = cpu_seconds(pid) - cpu_before
    stop.set()
    await asyncio.gather(*tasks)
    from_send = [(t - sent[body]) * 1000 for body, times in watchers.received.items() for t in times if body in sent]
    from_ack = [(t - acked[body]) * 1000 for body, times in watchers.received.items() for t in times if body in acked]
    expected = sum(3 if (n % THREADS + 1) % 4 == 0 else 2 for n in range(rate * duration)) + OPERATORS * rate * duration
    return {
        "connections": len(sockets),
        "messages": rate * duration,
        "deliveries": watchers.deliveries,
        "expected_deliveries": expected,
        "latency_from_send_ms": {
            "p50": round(statistics.median(from_send), 2),
            "p99": round(percentile(from_send, 99), 2),
        },
        "latency_from_commit_ack_ms": {
            "p50": round(statistics.median(from_ack), 2),
            "p99": round(percentile(from_ack, 99), 2),
        },
        "server_cpu_seconds": round(cpu_used, 2),
        "server_cpu_us_per_delivery": round(cpu_used / max(watchers.deliveries, 1) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--duration", type=int, default=20)
    args = parser.parse_args()
    name = f"sav_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        import subprocess
        import sys

        subprocess.run(
            [str(Path(sys.executable).parent / "sav"), "migrate"],
            env={**os.environ, "SAV_DATABASE_URL": url},
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        seed(f"postgresql://postgres@127.0.0.1:5432/{name}")
        server = Server(url)
        try:
            result = asyncio.run(drive(server, args.rate, args.duration))
        finally:
            server.stop()
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"realtime-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
