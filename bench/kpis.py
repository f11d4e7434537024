"""KPI benchmark (issue 14), on PostgreSQL.

1 000 000 orders and 100 000 disputes spread over the last 90 days and 500 shops (shop sizes skewed:
shop g % 500, with every tenth shop five times busier) are inserted server-side (generate_series), with
realistic moments: most disputes answered within hours, a third escalated, most resolved, some reopened
or appealed, a CSAT answer on half of the resolved ones, 30 000 refunds in three currencies. Then, with
the app served by uvicorn (``sav serve``), one request at a time through HTTP:

- ``GET /health`` (the framework's floor on this machine, for the ratio);
- ``GET /v1/reports/kpis`` for the last 30 days, all shops (goal: p95 < 300 ms);
- the same for one shop (goal: p95 < 50 ms), and ``GET /v1/sellers/{id}/metrics``.

The plans of the report's queries (EXPLAIN ANALYZE) are printed at the end.

    .venv/bin/python -m bench.kpis --orders 1000000 --disputes 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.dialects import postgresql

from bench.threads_scale import ADMIN, ROOT, Server, time_requests, token

SHOPS = 500
SEED_SQL = """
INSERT INTO sellers (id, name, refund_on, created_at, updated_at)
SELECT 'shop-' || g, 'Shop ' || g, 'receipt', now(), now() FROM generate_series(0, %(shops)s - 1) g;

INSERT INTO orders (id, buyer_id, seller_id, currency, total_amount, commission_amount, payment_provider,
                    charge_id, escrow_status, revision, created_at, updated_at)
SELECT 'ord-' || g, 'buyer-' || (g %% 200000),
       'shop-' || CASE WHEN g %% 3 = 0 THEN ((g / 3) %% 50) * 10 ELSE g %% %(shops)s END,
       CASE WHEN g %% 10 = 0 THEN 'GBP' WHEN g %% 25 = 0 THEN 'USD' ELSE 'EUR' END,
       1000 + (g::bigint * 7919) %% 90000, 100, 'stripe', 'ch_' || g, 'held', 0,
       now() - ((g::bigint * 104729) %% 7776000) * interval '1 second',
       now()
FROM generate_series(1, %(orders)s) g;

-- One dispute in every `every` orders (a different residue each time, so every shop has some),
-- opened 0-5 days after it; moments in seconds after the opening.
INSERT INTO disputes (id, order_id, buyer_id, seller_id, status, reason, requested, currency, amount, priority,
                      priority_rank, thread_id, appealed, reopened, escalated_at, first_escalated_at,
                      first_claimed_at, first_response_due, resolution_due, csat_score, created_at, updated_at,
                      first_response_at, first_operator_response_at, first_resolved_at, sla_resolved_at,
                      closed_at, at_fault, return_required, refund_failed)
SELECT 'dsp-' || d.g, o.id, o.buyer_id, o.seller_id,
       CASE WHEN d.g %% 10 < 7 THEN 'resolved' WHEN d.g %% 10 < 9 THEN 'escalated' ELSE 'open' END,
       'defective', '{"type": "refund_full"}', o.currency, o.total_amount,
       CASE WHEN d.g %% 5 = 0 THEN 'critical' ELSE 'standard' END, CASE WHEN d.g %% 5 = 0 THEN 0 ELSE 1 END,
       'thr-' || d.g, d.g %% 50 = 0, d.g %% 40 = 0,
       e.esc, e.esc, e.claim, e.esc + interval '4 hours', e.esc + interval '48 hours',
       CASE WHEN d.g %% 10 < 7 AND d.g %% 2 = 0 THEN 1 + d.g %% 5 END,
       e.opened, e.opened,
       CASE WHEN d.g %% 10 < 9 THEN e.opened + ((d.g * 7919) %% 172800) * interval '1 second' END,
       e.claim,
       CASE WHEN d.g %% 10 < 7 THEN e.opened + ((d.g * 104729) %% 604800 + 3600) * interval '1 second' END,
       CASE WHEN d.g %% 10 < 7 AND e.esc IS NOT NULL
            THEN e.opened + ((d.g * 104729) %% 604800 + 3600) * interval '1 second' END,
       CASE WHEN d.g %% 10 < 4 THEN e.opened + interval '20 days' END,
       CASE WHEN e.esc IS NOT NULL AND d.g %% 10 < 7
            THEN (ARRAY['seller','buyer','carrier','operator','none'])[1 + d.g %% 5] END,
       d.g %% 7 = 0, false
FROM (SELECT g::bigint AS g, (g::bigint - 1) * %(every)s + 1 + (g::bigint * 7) %% %(every)s AS o
        FROM generate_series(1, %(disputes)s) g) d
JOIN orders o ON o.id = 'ord-' || d.o
CROSS JOIN LATERAL (
    SELECT o.created_at + ((d.g * 31) %% 432000) * interval '1 second' AS opened,
           CASE WHEN d.g %% 3 = 0 THEN o.created_at + ((d.g * 31) %% 432000 + 7200) * interval '1 second' END AS esc,
           CASE WHEN d.g %% 3 = 0 AND d.g %% 10 < 8
                THEN o.created_at + ((d.g * 31) %% 432000 + 7200 + (d.g %% 20000)) * interval '1 second' END AS claim
) e;

INSERT INTO refunds (id, order_id, seller_id, order_created_at, dispute_id, source_key, kind, amount, currency,
                     funded_by, bonus_amount, seller_amount, operator_amount, reason, status, attempts,
                     next_attempt_at, created_by, created_at, updated_at)
SELECT 'ref-' || d.id, d.order_id, o.seller_id, o.created_at, d.id, 'dispute:' || d.id,
       (ARRAY['partial','full','credit','promo_code'])[1 + (hashtext(d.id) & 3)], d.amount / 2, d.currency,
       (ARRAY['seller','operator','split'])[1 + (hashtext(d.id) & 1) + (hashtext(d.id) >> 30 & 1)], 0,
       d.amount / 2, 0, 'bench', CASE WHEN hashtext(d.id) %% 20 = 0 THEN 'failed' ELSE 'succeeded' END, 1,
       d.created_at, 'bench', d.first_resolved_at, d.first_resolved_at
FROM disputes d JOIN orders o ON o.id = d.order_id
WHERE d.first_resolved_at IS NOT NULL AND hashtext(d.id) %% 7 < 3;

VACUUM ANALYZE;
"""


def seed(dsn: str, orders: int, disputes: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in SEED_SQL.split(";\n"):
            if statement.strip():
                conn.execute(
                    statement,  # type: ignore[arg-type]
                    {"shops": SHOPS, "orders": orders, "disputes": disputes, "every": orders // disputes},
                )
    return time.perf_counter() - started


def explain(dsn: str, seller_id: str | None) -> dict[str, str]:
    """The plans of the report's statements, compiled by SQLAlchemy for PostgreSQL with the values inlined."""
    from app.reports import kpis

    now = datetime.now(UTC)
    window = kpis.Window(now - timedelta(days=30), now, seller_id)
    statements = {
        "orders": kpis.order_counts(window),
        "disputes": kpis.dispute_counts(window, now),
        "percentiles": kpis.duration_percentiles(window, dialect="postgresql"),
        "refunds": kpis.refund_breakdown(window),
    }
    plans = {}
    with psycopg.connect(dsn) as conn:
        for name, statement in statements.items():
            sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).fetchall()  # type: ignore[call-overload]
            plans[name] = "\n".join(r[0] for r in rows)
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--disputes", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    name = f"sav_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
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
        seeded = seed(dsn, args.orders, args.disputes)
        print(f"seeded {args.orders} orders, {args.disputes} disputes in {seeded:.1f}s", flush=True)
        server = Server(url)
        try:
            agent = {"Authorization": f"Bearer {token('finance', 'bench-finance')}"}
            since = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            runs: dict[str, Any] = {"health": asyncio.run(time_requests(server.url, "/health", {}, args.requests))}
            paths = {
                "kpis all shops (30 days)": f"/v1/reports/kpis?from={since}",
                "kpis one shop (30 days)": f"/v1/reports/kpis?from={since}&seller_id=shop-7",
                "kpis busiest shop (30 days)": f"/v1/reports/kpis?from={since}&seller_id=shop-10",
                "metrics one shop (30 days)": "/v1/sellers/shop-7/metrics",
            }
            for label, path in paths.items():
                runs[label] = asyncio.run(time_requests(server.url, path, agent, args.requests))
                runs[label]["ratio_to_health_p50"] = round(runs[label]["p50_ms"] / runs["health"]["p50_ms"], 1)
            sample = asyncio.run(_one(server.url, paths["kpis all shops (30 days)"], agent))
        finally:
            server.stop()
        result = {
            "orders": args.orders,
            "disputes": args.disputes,
            "shops": SHOPS,
            "seconds_to_seed": round(seeded, 1),
            "requests_per_case": args.requests,
            "latency_ms": runs,
            "all_shops_answer": sample,
        }
        print(json.dumps(result, indent=2))
        for label, plan in {
            **explain(dsn, None),
            **{f"{k} (shop-7)": v for k, v in explain(dsn, "shop-7").items()},
        }.items():
            print(f"\n--- {label}\n{plan}")
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"kpis-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


async def _one(base: str, path: str, headers: dict[str, str]) -> Any:
    import httpx

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        response = await client.get(path)
        response.raise_for_status()
        return response.json()


if __name__ == "__main__":
    main()
