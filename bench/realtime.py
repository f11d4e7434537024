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
import contextlib
import json
import multiprocessing
import os
import statistics
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.threads_scale import ADMIN, ROOT, Server, percentile, token

THREADS = 200
OPERATORS = 5
IDLE_BUYERS = 45
POST_CONNECTIONS = 16


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


class Received(msgspec.Struct):
    type: str
    data: dict[str, Any] = {}


def watch_process(ws_url: str, jwts: list[str], conn: Connection) -> None:
    """One watcher process: connect its share of the sockets, say so, record arrivals until told to stop.

    Watchers live in their own processes (time.monotonic is system-wide on Linux) so that decoding 1 500
    frames a second does not compete with the poster's event loop; without compression, which costs the
    server CPU per connection and the client CPU per frame.
    """

    async def run() -> list[tuple[str, float]]:
        arrivals: list[tuple[str, float]] = []
        decode = msgspec.json.Decoder(Received).decode

        async def one(jwt: str) -> Any:
            ws = await connect(f"{ws_url}?token={jwt}", max_size=2**22, compression=None)
            await ws.recv()  # the ready frame
            return ws

        async def drain(ws: Any) -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    now = time.monotonic()
                    event = decode(raw)
                    if event.type == "message.created":
                        arrivals.append((event.data["body"], now))

        sockets = [await one(jwt) for jwt in jwts]
        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers)
        return arrivals

    conn.send(asyncio.run(run()))


class Poster:
    """A lean HTTP/1.1 keep-alive client for the posting side.

    httpx spends about 5 ms of CPU per request under concurrency: at 200 posts a second it saturates a
    core and the benchmark measures its own client. This writes the request bytes itself over a pool of
    persistent connections and reads back the status line, headers and Content-Length body.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.all: list[asyncio.StreamWriter] = []

    async def open(self, connections: int) -> None:
        for _ in range(connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.all.append(writer)
            self.idle.put_nowait((reader, writer))

    async def post(self, path: str, payload: dict[str, Any], jwt: str, headers: dict[str, str] | None = None) -> int:
        body = json.dumps(payload).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {jwt}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        reader, writer = await self.idle.get()
        try:
            try:
                return await self._exchange(reader, writer, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                # uvicorn closes keep-alive connections idle for 5 s: reconnect once (nothing was processed).
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.all.append(writer)
                return await self._exchange(reader, writer, request)
        finally:
            self.idle.put_nowait((reader, writer))

    @staticmethod
    async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return status

    async def close(self) -> None:
        for writer in self.all:
            writer.close()


async def drive(server: Server, rate: int, duration: int, processes: int) -> dict[str, Any]:
    ws_url = server.url.replace("http://", "ws://") + "/v1/ws"
    sockets: list[str] = []
    for g in range(1, THREADS + 1):
        sockets.append(token("buyer", f"buyer-{g}"))
        sockets.append(token("seller", f"member-{g}", f"shop-{g}"))
        if g % 4 == 0:
            sockets.append(token("seller", f"member-b-{g}", f"shop-{g}"))
    sockets += [token("agent", f"agent-{i}") for i in range(OPERATORS)]
    sockets += [token("buyer", f"idle-{i}") for i in range(IDLE_BUYERS)]
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for i in range(processes):
        ours, theirs = context.Pipe()
        worker = context.Process(target=watch_process, args=(ws_url, sockets[i::processes], theirs))
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    posters = {g: token("buyer", f"buyer-{g}") for g in range(1, THREADS + 1)}
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    pid = server.process.pid
    cpu_before = cpu_seconds(pid)
    poster = Poster(server.port)
    await poster.open(POST_CONNECTIONS)

    async def post(n: int) -> None:
        g = n % THREADS + 1
        body = f"m-{n}-{uuid.uuid4().hex[:6]}"
        sent[body] = time.monotonic()
        status = await poster.post(f"/v1/threads/thr_rt_{g}/messages", {"body": body}, posters[g])
        acked[body] = time.monotonic()
        if status != 201:
            raise RuntimeError(f"POST answered {status}")

    started = time.monotonic()
    inflight = []
    for n in range(rate * duration):
        target = started + n / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        inflight.append(asyncio.create_task(post(n)))
    await asyncio.gather(*inflight)
    await poster.close()
    await asyncio.sleep(2)
    cpu_used = cpu_seconds(pid) - cpu_before
    arrivals: list[tuple[str, float]] = []
    for pipe in pipes:
        pipe.send("stop")
    for pipe, worker in zip(pipes, workers, strict=True):
        arrivals += pipe.recv()
        worker.join()
    from_send = [(t - sent[body]) * 1000 for body, t in arrivals if body in sent]
    from_ack = [(t - acked[body]) * 1000 for body, t in arrivals if body in acked]
    expected = sum(3 if (n % THREADS + 1) % 4 == 0 else 2 for n in range(rate * duration)) + OPERATORS * rate * duration
    return {
        "connections": len(sockets),
        "rate_per_second": rate,
        "messages": rate * duration,
        "deliveries": len(arrivals),
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
        "server_cpu_us_per_delivery": round(cpu_used / max(len(arrivals), 1) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--watcher-processes", type=int, default=2)
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
            result = asyncio.run(drive(server, args.rate, args.duration, args.watcher_processes))
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
