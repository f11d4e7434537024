"""The ``sav`` command: serve, worker, migrate, demo, token, reconcile."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.settings import Settings, get_settings_or_exit

if TYPE_CHECKING:
    from app.reconciliation.schemas import ReconciliationRead


def migrate(settings: Settings) -> None:
    from alembic import command

    from app.db import alembic_config

    config = alembic_config(settings.database_url)
    config.attributes["skip_logging_config"] = True
    command.upgrade(config, "head")


def check_schema_or_exit(settings: Settings) -> None:
    from app.db import create_engine, ensure_schema_current
    from app.errors import DomainError

    async def check() -> None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await ensure_schema_current(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except DomainError as exc:
        print(f"sav: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"sav: cannot reach the database: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    import uvicorn

    check_schema_or_exit(settings)
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=15,
        proxy_headers=True,
    )


def cmd_serve(args: argparse.Namespace) -> None:
    settings = get_settings_or_exit()
    if args.migrate:
        migrate(settings)
    serve(settings, host=args.host, port=args.port, workers=args.workers)


def cmd_migrate(_: argparse.Namespace) -> None:
    migrate(get_settings_or_exit())


def cmd_worker(_: argparse.Namespace) -> None:
    from app.db import create_engine
    from app.main import build_worker
    from app.observability import configure_logging

    settings = get_settings_or_exit()
    configure_logging(settings.log_level, as_json=settings.log_json)
    check_schema_or_exit(settings)

    async def run() -> None:
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            await build_worker(settings, engine).run_forever()
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def cmd_token(args: argparse.Namespace) -> None:
    from app.auth import TOKEN_ROLES, issue_token

    if args.role not in TOKEN_ROLES:
        raise SystemExit(f"sav: unknown role {args.role!r}; one of {', '.join(sorted(TOKEN_ROLES))}")
    if args.role == "seller" and not args.seller_id:
        raise SystemExit("sav: a seller token needs --seller-id")
    settings = get_settings_or_exit()
    print(
        issue_token(
            settings,
            sub=args.sub,
            role=args.role,
            seller_id=args.seller_id or "",
            name=args.name or "",
            ttl_seconds=args.ttl,
        )
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from app import demo_reconciliation
    from app.auth import issue_token
    from app.db import create_engine
    from app.demo import USERS, seed
    from app.demo_payouts import summary

    settings = get_settings_or_exit()
    migrate(settings)

    async def run_seed() -> tuple[str, str]:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await seed(engine)
            reconciliation = await demo_reconciliation.find(engine, settings=settings)
            return await summary(engine), demo_reconciliation.summary(reconciliation)
        finally:
            await engine.dispose()

    payouts, reconciled = asyncio.run(run_seed())
    base = f"http://{args.host}:{args.port}"
    print(f"\nSAV demo marketplace seeded in {settings.database_url}\n")
    print("Tokens (valid 30 days):")
    for user in USERS:
        token = issue_token(
            settings, sub=user.sub, role=user.role, seller_id=user.seller_id, name=user.name, ttl_seconds=30 * 86_400
        )
        variable = "TOKEN_" + user.sub.upper().replace("-", "_")
        print(f"\n  {user.role:<11} {user.sub}  ({user.name})\n  export {variable}={token}")
    print(f'\nTry:  curl -H "Authorization: Bearer $TOKEN_BUYER_CAMILLE" {base}/v1/orders/ord-1001')
    if payouts:
        print(f"Money out of escrow: {payouts}")
    if reconciled:
        print(f"Month-end: {reconciled}")
    print(f"API docs: {base}/schema\n")
    sys.stdout.flush()
    if not args.no_serve:
        serve(settings, host=args.host, port=args.port, workers=1)


def aware_time(text: str) -> datetime:
    """``--from``/``--to``: ISO 8601; a time without a zone is UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def count_lines(path: str) -> int:
    """The file's line count less its header: the progress bar's total (rows with a line break inside a
    quoted field make it a little more than the rows)."""
    lines = 0
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


def cmd_reconcile(args: argparse.Namespace) -> None:
    from dataclasses import replace

    import msgspec
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.auth import Actor, Role
    from app.db import create_engine
    from app.errors import DomainError
    from app.main import payment_gateway
    from app.reconciliation.job import LEASE, run_reconciliation
    from app.reconciliation.service import start_reconciliation

    settings = get_settings_or_exit()
    if args.database_url:
        settings = replace(settings, database_url=args.database_url)
    if args.file is None and (args.period_from is None or args.period_to is None):
        raise SystemExit("sav: give --from and --to (the provider's period), or --file")
    if args.file is not None and not os.path.isfile(args.file):
        print(f"sav: no such file: {args.file}", file=sys.stderr)
        raise SystemExit(2)
    gateway = payment_gateway(settings)
    if args.file is None and gateway is None:
        raise SystemExit("sav: pulling a period from the provider needs SAV_STRIPE_API_KEY")
    check_schema_or_exit(settings)
    actor = Actor(id="sav-cli", role=Role.FINANCE, name="sav reconcile")
    total = count_lines(args.file) if args.file is not None else None
    stderr = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]reconciling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=stderr,
        disable=args.quiet,
    )

    async def run() -> ReconciliationRead:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        engine = create_engine(settings.database_url, pool_size=2)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            async with sessions() as session, session.begin():
                started = await start_reconciliation(
                    session,
                    actor=actor,
                    period_from=args.period_from,
                    period_to=args.period_to,
                    file_path=args.file,
                    lease=LEASE,  # created leased to this process: a running `sav worker` leaves it alone
                )
            with progress:
                task = progress.add_task("rows", total=total)
                rec = await run_reconciliation(
                    sessions,
                    gateway,
                    started.reconciliation_id,
                    lambda rows: progress.update(task, completed=rows),
                    edge_seconds=settings.reconciliation_edge_seconds,
                    leased=True,
                )
                progress.update(task, completed=rec.progress.rows, total=rec.progress.rows)
            return rec
        finally:
            await engine.dispose()

    began = time.perf_counter()
    try:
        rec = asyncio.run(run())
    except DomainError as exc:
        print(f"sav: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    elapsed = time.perf_counter() - began
    if args.json:
        print(msgspec.json.encode(rec).decode())
    else:
        print(describe_reconciliation(rec, elapsed))
    if rec.status != "done":
        print(f"sav: reconciliation {rec.reconciliation_id} {rec.status}: {rec.error}", file=sys.stderr)
        raise SystemExit(2)


def describe_reconciliation(rec: ReconciliationRead, elapsed: float) -> str:
    """The counts and the per-currency totals (in major units) of a finished reconciliation, as a table."""
    from app.reconciliation.currencies import format_minor

    rows = rec.progress.rows
    lines = [
        f"reconciliation {rec.reconciliation_id}: {rec.status}, {rows} rows in {elapsed:.1f} s"
        f" ({rows / elapsed if elapsed > 0 else 0:,.0f} rows/s)"
    ]
    for name in ("matched", "amount_mismatch", "missing_in_ledger", "missing_in_provider", "ignored"):
        lines.append(f"  {name:<20} {getattr(rec.counts, name):>10}")
    if rec.totals:
        lines.append(f"  {'currency':<8} {'provider net':>16} {'ledger net':>16} {'gross drift':>16}")
    for total in rec.totals:
        amounts = (
            format_minor(getattr(total, f), total.currency) for f in ("provider_net", "ledger_net", "gross_drift")
        )
        lines.append(f"  {total.currency:<8} " + " ".join(f"{amount:>16}" for amount in amounts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sav", description="Tripartite after-sales backend")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the API (uvicorn)")
    p.add_argument("--host", default=os.environ.get("SAV_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SAV_PORT", "8000")))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--migrate", action="store_true", help="run `alembic upgrade head` first")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run the background worker (housekeeping, timers, outbox)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="migrate, seed a demo marketplace, print tokens, serve")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-serve", action="store_true", help="seed and print tokens, then exit")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("token", help="mint a development token (HS256)")
    p.add_argument("--role", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--seller-id", default="")
    p.add_argument("--name", default="")
    p.add_argument("--ttl", type=int, default=86_400, help="lifetime in seconds")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser(
        "reconcile",
        help="reconcile the provider's balance transactions of a period, or an export file, with the ledger",
    )
    p.add_argument("--from", dest="period_from", type=aware_time, help="start of the period (ISO 8601, UTC if no zone)")
    p.add_argument("--to", dest="period_to", type=aware_time, help="end of the period, excluded")
    p.add_argument("--file", help="a Stripe CSV export (balance transactions or itemized balance change report)")
    p.add_argument("--database-url", default="", help="instead of SAV_DATABASE_URL")
    p.add_argument("--json", action="store_true", help="print the reconciliation as the API returns it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reconcile)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
