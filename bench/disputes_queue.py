"""Disputes benchmark (issue 5), on PostgreSQL.

1. Queue read: 100 000 open disputes (escalated and in review, spread over 500 shops, both priorities,
   scattered SLA dates) are inserted server-side; then ``GET /v1/queue`` (first page, a filtered page and
   a second page through the cursor) is timed one request at a time. Goal: p95 < 20 ms.
2. Claims: 2 000 escalated disputes; 16 agents claim concurrently, each dispute targeted by two agents
   (so every claim is contested). Reported: successful claims per second; then the audit log is checked
   for double claims (a dispute with two ``claim`` events, or a claim whose 200 lost to another 200).

    .venv/bin/python -m bench.disputes_queue --disputes 100000 --claims 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.realtime import Poster
from bench.threads_scale import ADMIN, ROOT, Server, time_requests, token

SHOPS = 500


def seed(dsn: str, disputes: int, claimable: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sellers (id, name, refund_on, created_at, updated_at) "
            "SELECT 'shop-' || g, 'Shop ' || g, 'receipt', now(), now() FROM generate_series(0, %(n)s - 1) g",
            {"n": SHOPS},
        )
        total = disputes + claimable
        conn.execute(
            """
            INSERT INTO orders (id, buyer_id, seller_id, currency, total_amount, commission_amount,
                                payment_provider, charge_id, escrow_status, revision, created_at, updated_at)
            SELECT 'ord-' || g, 'buyer-' || (g %% 50000), 'shop-' || (g %% %(shops)s), 'EUR',
                   1000 + (g::bigint * 7919) %% 90000, 100, 'stripe', 'ch_' || g, 'frozen', 0, now(), now()
            FROM generate_series(1, %(total)s) g
            """,
            {"total": total, "shops": SHOPS},
        )
        # Queue rows: 60 % escalated (unclaimed), 40 % in review; 20 % critical; SLA dates spread
        # from 2 days ago (breached) to 2 days ahead.
        conn.execute(
            """
            INSERT INTO disputes (id, order_id, buyer_id, seller_id, status, reason, requested, currency, amount,
                                  priority, priority_rank, thread_id, assignee_id, assignee_role, appealed, reopened,
                                  escalated_at, first_escalated_at, first_claimed_at, first_response_due,
                                  resolution_due, queue_due_at, created_at, updated_at)
            SELECT 'dsp-' || g, 'ord-' || g, 'buyer-' || (g %% 50000), 'shop-' || (g %% %(shops)s),
                   CASE WHEN g %% 5 < 3 THEN 'escalated' ELSE 'in_review' END, 'defective',
                   '{"type": "refund_full"}', 'EUR', 1000 + (g::bigint * 7919) %% 90000,
                   CASE WHEN g %% 5 = 0 THEN 'critical' ELSE 'standard' END,
                   CASE WHEN g %% 5 = 0 THEN 0 ELSE 1 END,
                   'thr-' || g,
                   CASE WHEN g %% 5 < 3 THEN NULL ELSE 'agent-' || (g %% 40) END,
                   CASE WHEN g %% 5 < 3 THEN NULL ELSE 'agent' END,
                   false, false, at, at, NULL, at + interval '4 hours', at + interval '48 hours',
                   at + interval '4 hours', at, at
            FROM (SELECT g, now() - interval '2 days' + ((g::bigint * 104729) %% 345600) * interval '1 second' AS at
                    FROM generate_series(1, %(n)s) g) s
            """,
            {"n": disputes, "shops": SHOPS},
        )
        conn.execute(
            """
            INSERT INTO disputes (id, order_id, buyer_id, seller_id, status, reason, requested, currency, amount,
                                  priority, priority_rank, thread_id, appealed, reopened, escalated_at,
                                  first_escalated_at, first_response_due, resolution_due, queue_due_at,
                                  created_at, updated_at)
            SELECT 'claim-' || g, 'ord-' || (%(n)s + g), 'buyer-1', 'shop-1', 'escalated', 'damaged',
                   '{"type": "refund_full"}', 'EUR', 5000, 'critical', 0, 'thr-c' || g, false, false,
                   now(), now(), now() + interval '1 hour', now() + interval '24 hours',
                   now() + interval '1 hour', now(), now()
            FROM generate_series(1, %(c)s) g
            """,
            {"n": disputes, "c": claimable},
        )
        conn.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - started


async def claim_storm(server: Server, claimable: int, agents: int) -> dict[str, Any]:
    tokens = [token("agent", f"bench-agent-{i}") for i in range(agents)]
    # Each dispute is claimed by two different agents: every claim is contested.
    work: list[list[str]] = [[] for _ in range(agents)]
    for n in range(1, claimable + 1):
        first = n % agents
        work[first].append(f"claim-{n}")
        work[(first + 1 + n % (agents - 1)) % agents].append(f"claim-{n}")
    for items in work:
        random.shuffle(items)
    poster = Poster(server.port)
    await poster.open(agents)
    won: list[str] = []
    lost = 0
    others = 0

    async def agent(i: int) -> None:
        nonlocal lost, others
        for dispute_id in work[i]:
            status = await poster.post(f"/v1/disputes/{dispute_id}/actions", {"action": "claim"}, tokens[i])
            if status == 200:
                won.append(dispute_id)
            elif status == 409:
                lost += 1
            else:
                others += 1

    started = time.perf_counter()
    await asyncio.gather(*(agent(i) for i in range(agents)))
    elapsed = time.perf_counter() - started
    await poster.close()
    return {
        "agents": agents,
        "disputes": claimable,
        "claims_sent": sum(len(w) for w in work),
        "won": len(won),
        "lost_409": lost,
        "other_status": others,
        "seconds": round(elapsed, 2),
        "claim_requests_per_second": round(sum(len(w) for w in work) / elapsed, 1),
        "successful_claims_per_second": round(len(won) / elapsed, 1),
        "double_wins_in_responses": len(won) - len(set(won)),
    }


def audit_double_claims(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT dispute_id FROM dispute_events WHERE action = 'claim' "
            "GROUP BY dispute_id HAVING count(*) > 1) d"
        ).fetchone()
    return int(row[0]) if row else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disputes", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
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
        seeded = seed(dsn, args.disputes, args.claims)
        print(f"seeded {args.disputes} queue disputes + {args.claims} claimable in {seeded:.1f}s", flush=True)
        server = Server(url)
        try:
            headers = {"Authorization": f"Bearer {token('agent', 'bench-reader')}"}
            reads: dict[str, Any] = {}
            first = asyncio.run(time_requests(server.url, "/v1/queue", headers, args.requests))
            reads["first page (50)"] = first
            reads["one shop (seller_id filter)"] = asyncio.run(
                time_requests(server.url, "/v1/queue?seller_id=shop-7", headers, args.requests)
            )
            reads["critical only"] = asyncio.run(
                time_requests(server.url, "/v1/queue?priority=critical&limit=50", headers, args.requests)
            )
            cursor = httpx.get(server.url + "/v1/queue", headers=headers).json()["next_cursor"]
            reads["second page (cursor)"] = asyncio.run(
                time_requests(server.url, f"/v1/queue?cursor={cursor}", headers, args.requests)
            )
            claims = asyncio.run(claim_storm(server, args.claims, args.agents))
        finally:
            server.stop()
        claims["double_claims_in_audit_log"] = audit_double_claims(dsn)
        result = {"queue_disputes": args.disputes, "queue_reads_ms": reads, "claims": claims}
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"disputes-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
