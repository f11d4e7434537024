"""The ``sav`` command: serve, demo, token, migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from app.settings import Settings, get_settings_or_exit


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
    from app.auth import issue_token
    from app.db import create_engine
    from app.demo import USERS, seed
    from app.demo_payouts import summary

    settings = get_settings_or_exit()
    migrate(settings)

    async def run_seed() -> str:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await seed(engine)
            return await summary(engine)
        finally:
            await engine.dispose()

    payouts = asyncio.run(run_seed())
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
    print(f"API docs: {base}/schema\n")
    sys.stdout.flush()
    if not args.no_serve:
        serve(settings, host=args.host, port=args.port, workers=1)


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

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
