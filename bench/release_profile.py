"""Where the release benchmark's time goes, per process: ``bench/release.py``'s throughput phase, with the
CPU time (user + system, from ``/proc``) of each ``sav worker``, of the local Stripe-compatible server and
of the PostgreSQL backends serving the benchmark's database, sampled until the run ends, plus the load
average while it runs (the machine's other jobs share its cores). ``--py-spy DIR``: also a py-spy profile
of each worker and of the server (raw collapsed stacks, ``DIR/<process>.txt``; py-spy is not a project
dependency: ``uv pip install py-spy`` into your own venv).

    .venv/bin/python -m bench.release_profile --orders 10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import release

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def backends_of(database: str) -> list[int]:
    """PostgreSQL backend processes connected to ``database`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--shops", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--py-spy", default="", help="folder for py-spy profiles (none if empty)")
    args = parser.parse_args()
    processes: dict[str, int] = {}  # name -> pid
    cpu: dict[str, float] = {}  # name or backend pid -> last CPU seconds seen
    database: list[str] = []
    spies: list[subprocess.Popen[bytes]] = []

    def watch(pid: int, name: str) -> None:
        processes[name] = pid
        if args.py_spy:
            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
            spy = str(Path(sys.executable).parent / "py-spy")
            command = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking"]
            spies.append(subprocess.Popen([*command, "-o", str(Path(args.py_spy) / f"{name}.txt")]))

    new_database = release.new_database
    start_workers = release.start_workers  # type: ignore[attr-defined]
    start_server = release.start_stripe_server  # type: ignore[attr-defined]

    def on_new_database() -> tuple[str, str, str]:
        made = new_database()
        database.append(made[0])
        return made

    def on_start_workers(n: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
        workers = start_workers(n, env, logs)
        for i, worker in enumerate(workers):
            watch(worker.pid, f"worker{i}")
        return workers

    def on_start_server() -> tuple[subprocess.Popen[str], str]:
        process, url = start_server()
        watch(process.pid, "stripe_server")
        return process, url

    release.new_database = on_new_database
    release.start_workers = on_start_workers  # type: ignore[attr-defined]
    release.start_stripe_server = on_start_server  # type: ignore[attr-defined,assignment]
    done = threading.Event()
    loads: list[float] = []

    def sample() -> None:
        last_load = 0.0
        while not done.is_set():
            for name, pid in list(processes.items()):
                cpu[name] = cpu_seconds(pid) or cpu.get(name, 0.0)
            for pid in backends_of(database[0]) if database else []:
                cpu[f"pg:{pid}"] = cpu_seconds(pid) or cpu.get(f"pg:{pid}", 0.0)
            if "worker0" in processes and time.monotonic() - last_load >= 5:
                loads.append(os.getloadavg()[0])
                last_load = time.monotonic()
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    result: dict[str, Any] = release.throughput(args)
    done.set()
    for spy in spies:
        spy.wait(60)
    paid = max(result["paid"], 1)
    per_process = {name: round(seconds, 1) for name, seconds in cpu.items() if not name.startswith("pg:")}
    per_process["postgresql_backends"] = round(sum(s for n, s in cpu.items() if n.startswith("pg:")), 1)
    result["cpu_seconds"] = per_process
    result["cpu_ms_per_release"] = {name: round(1000 * seconds / paid, 2) for name, seconds in per_process.items()}
    result["load_average_1min"] = {
        "min": min(loads, default=0.0),
        "mean": round(sum(loads) / max(len(loads), 1), 2),
        "max": max(loads, default=0.0),
    }
    result["machine"] = release.machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
