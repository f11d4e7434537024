"""HTTP benchmark harness: the real service, a real database, load from wrk in another process.

What it measures: requests per second and latency percentiles (p50/p95/p99) of a few endpoints, with the
service started exactly as in production (``sav migrate`` then ``sav serve``, one uvicorn worker) on SQLite
or on a throwaway PostgreSQL database, seeded through the public API, and driven by ``wrk``.

Why ``/health`` is measured in the same run: absolute req/s depend on the machine, on what else runs on it
and on the load generator sharing its cores. ``/health`` does no auth and no database work, so it is the
ceiling the framework reaches on this machine at this moment; dividing an endpoint's req/s by it gives a
ratio that compares across machines and runs far better than raw numbers do. A ratio of 0.25 means the
endpoint's own work (auth, policy, SQL, serialization) costs three times what the framework costs.

    .venv/bin/python -m bench.run --db sqlite --scenarios health,order_read,order_upsert --duration 10

Adding a scenario: write ``bench/wrk/<name>.lua`` (a ``request`` function, arguments read in ``init``),
then add an entry to ``SCENARIOS`` whose setup function seeds what it needs and returns the script's
arguments. The shared ``report.lua`` (the ``done`` hook printing the percentiles) is appended for you.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SAV = Path(sys.executable).parent / "sav"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_APP = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

SELLER_ID = "shop-bench"
BUYER_ID = "buyer-bench"
ORDER_PREFIX = "bench-"


# --- the service under test -------------------------------------------------------------------------------


@dataclass
class Service:
    """A running ``sav serve`` and what the scenarios need to talk to it."""

    base_url: str
    marketplace_token: str
    buyer_token: str
    orders: int = 0
    runs: int = 0  # wrk runs so far; scenarios use it to keep ids unique across runs

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir}/bench.db"
        return
    name = f"sav_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_APP.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "SAV_DATABASE_URL": database_url,
        "SAV_JWT_SECRET": secret,
        "SAV_LOG_LEVEL": "WARNING",
        "SAV_RUN_WORKER": "false",
        "SAV_ENV": "test",
    }


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sav serve exited with code {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{base_url}/ready did not answer 200 within {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_service(database_url: str, log: Path) -> Iterator[Service]:
    """Migrate, start ``sav serve`` on a free port, wait for /ready, and stop it afterwards."""
    secret = secrets.token_hex(20)  # 40 characters
    env = server_env(database_url, secret)
    subprocess.run([SAV, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [SAV, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base_url, process)
            yield Service(
                base_url=base_url,
                marketplace_token=token(secret, database_url, sub="marketplace", role="marketplace"),
                buyer_token=token(secret, database_url, sub=BUYER_ID, role="buyer"),
            )
        finally:
            stop(process)


def token(secret: str, database_url: str, *, sub: str, role: str) -> str:
    from app.auth import issue_token
    from app.settings import load_settings

    settings = load_settings({"SAV_JWT_SECRET": secret, "SAV_DATABASE_URL": database_url}, dotenv=None)
    return issue_token(settings, sub=sub, role=role, ttl_seconds=4 * 3600)


# --- seeding through the API ------------------------------------------------------------------------------


def order_body(order_id: str) -> dict[str, Any]:
    """The body of ``PUT /v1/orders/{order_id}``; the same one is built in bench/wrk/order_upsert.lua."""
    return {
        "buyer_id": BUYER_ID,
        "seller_id": SELLER_ID,
        "currency": "EUR",
        "total": {"amount": 5000, "currency": "EUR"},
        "commission": {"amount": 500, "currency": "EUR"},
        "lines": [
            {
                "line_id": "l1",
                "sku": "SKU-1",
                "title": "Kettle",
                "quantity": 2,
                "unit_price": {"amount": 2500, "currency": "EUR"},
            }
        ],
        "payment": {"provider": "stripe", "charge_id": f"ch_{order_id}"},
    }


def expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: expected {status}, "
            f"got {response.status_code}: {response.text[:300]}"
        )


def seed(service: Service, orders: int) -> None:
    """One shop and ``orders`` orders (ids bench-1..bench-N) for one buyer, checked along the way."""
    marketplace = service.headers(service.marketplace_token)
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        expect(client.put(f"/v1/sellers/{SELLER_ID}", json={"name": "Bench shop"}, headers=marketplace), 201)
        for i in range(1, orders + 1):
            order_id = f"{ORDER_PREFIX}{i}"
            expect(client.put(f"/v1/orders/{order_id}", json=order_body(order_id), headers=marketplace), 201)
        first = f"{ORDER_PREFIX}1"
        expect(client.put(f"/v1/orders/{first}", json=order_body(first), headers=marketplace), 200)
        expect(client.get(f"/v1/orders/{first}", headers=service.headers(service.buyer_token)), 200)
    service.orders = orders


# --- scenarios ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    method: str  # what the scenario sends, for the report
    script: str  # file under bench/wrk/
    setup: Callable[[Service], list[str]]  # seeds what it needs; returns the script's arguments (after --)


def no_arguments(_: Service) -> list[str]:
    return []


def order_read_args(service: Service) -> list[str]:
    return [service.buyer_token, ORDER_PREFIX, str(service.orders)]


def order_upsert_args(service: Service) -> list[str]:
    # A fresh prefix for every wrk run (warm-up included), so every request creates a new order.
    return [service.marketplace_token, f"r{service.runs}", SELLER_ID, BUYER_ID]


SCENARIOS: dict[str, Scenario] = {
    "health": Scenario("GET", "health.lua", no_arguments),
    "order_read": Scenario("GET", "order_read.lua", order_read_args),
    "order_upsert": Scenario("PUT", "order_upsert.lua", order_upsert_args),
}


# --- wrk ----------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    return found


def script_file(scenario: Scenario, workdir: Path) -> Path:
    """The scenario's script with the shared ``done`` hook appended."""
    path = workdir / scenario.script
    if not path.exists():
        path.write_text((WRK_DIR / scenario.script).read_text() + "\n" + (WRK_DIR / "report.lua").read_text())
    return path


def run_wrk(
    service: Service, scenario: Scenario, workdir: Path, *, duration: int, threads: int, connections: int
) -> dict[str, Any]:
    arguments = scenario.setup(service)
    service.runs += 1
    command = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script_file(scenario, workdir)),
        service.base_url,
        "--",
        *arguments,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict[str, Any]:
    """req/s, non-2xx and p50/p90/p99 from wrk's text; p95 (absent from --latency) from report.lua's line."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    report = re.search(r"^BENCH (\{.*\})$", out, re.MULTILINE)
    if rps is None or report is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    lua = json.loads(report.group(1))
    distribution = {
        f"p{q}_ms": round(float(value) * UNIT_MS[unit], 3)
        for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": round(float(rps.group(1)), 1),
        "requests": lua["requests"],
        "p50_ms": distribution.get("p50_ms", lua["p50_ms"]),
        "p90_ms": distribution.get("p90_ms", lua["p90_ms"]),
        "p95_ms": lua["p95_ms"],
        "p99_ms": distribution.get("p99_ms", lua["p99_ms"]),
        "max_ms": lua["max_ms"],
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": lua["socket_errors"],
    }


# --- the run ------------------------------------------------------------------------------------------------


def measure(service: Service, names: list[str], workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        scenario = SCENARIOS[name]
        options = {"threads": args.threads, "connections": args.connections}
        if args.warmup > 0:
            run_wrk(service, scenario, workdir, duration=args.warmup, **options)
        results[name] = {
            "method": scenario.method,
            **run_wrk(service, scenario, workdir, duration=args.duration, **options),
        }
        print(f"  {name}: {results[name]['rps']:.0f} req/s", flush=True)
    ceiling = results["health"]["rps"]
    for figures in results.values():
        figures["ratio_to_health"] = round(figures["rps"] / ceiling, 3)
    return results


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    wrk = subprocess.run([ensure_wrk(), "--version"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0],
        "commit": commit.stdout.strip(),
    }


def print_table(db: str, results: dict[str, Any]) -> None:
    print(
        f"\n{db}: {'scenario':<14} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'ratio':>6}"
    )
    for name, r in results.items():
        print(
            f"{'':<{len(db) + 2}}{name:<14} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['non_2xx']:>8} {r['ratio_to_health']:>6.3f}"
        )
        if r["socket_errors"]:
            print(f"{'':<{len(db) + 16}}({r['socket_errors']} socket errors)")


def report_server_log(log: Path) -> list[str]:
    """Anything the server logged at WARNING or above during the run is worth a look."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if lines:
        print(f"\nthe server logged {len(lines)} line(s) at WARNING+ (full log: {log}); last ones:")
        for line in lines[-5:]:
            print("  " + line[:300])
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = ["health", *[n for n in args.scenarios if n != "health"]]  # the ceiling always, and first
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = RESULTS_DIR / f"run-{args.db}-{stamp}-server.log"
    with (
        tempfile.TemporaryDirectory(prefix="sav-bench-") as tmp,
        database(args.db, Path(tmp)) as url,
        running_service(url, log) as service,
    ):
        seed(service, args.orders)
        print(f"{args.db}: seeded {args.orders} orders; {args.duration}s per scenario", flush=True)
        results = measure(service, names, Path(tmp), args)
    print_table(args.db, results)
    server_log = report_server_log(log)
    output = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "db": args.db,
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k != "scenarios"},
        "machine": machine(),
        "results": results,
        "server_log_lines": len(server_log),
    }
    path = RESULTS_DIR / f"run-{args.db}-{stamp}.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return output


def scenario_list(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scenarios", type=scenario_list, default=list(SCENARIOS), help="comma-separated")
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each scenario (default 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--orders", type=int, default=200, help="orders seeded for the read scenario")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
