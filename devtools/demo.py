"""``make demo``: the local Stripe-compatible server, then ``sav demo`` wired to it, so refunds are paid
end to end through the real Stripe adapter, offline.

The Stripe server gets a charge for every demo order (the ids the seeded orders carry) and sends its
signed webhooks to the demo API. Before the API starts, the demo is seeded here and money leaves escrow
(app/demo_payouts.py): the worker's jobs, run in this process through the real adapter, pay released
payouts, reverse one transfer and record one shop's refused reversal as a debt, netted from its next
release (that shop's connected account is emptied at the local server first, as a shop taking its
balance to its bank would); then finance reconciles an export of those movements with one break of
each kind (app/demo_reconciliation.py). It keeps its state in memory, so the demo starts from a fresh database
too (``./demo.db``, recreated on every run) unless ``SAV_DATABASE_URL`` names one. With
``SAV_STRIPE_API_KEY`` already set (your own Stripe test account), the local server is not started and
``sav demo`` runs as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from app import demo_payouts, demo_reconciliation
from app.cli import migrate
from app.db import create_engine
from app.demo import charge_id_of, order_totals, seed
from app.settings import load_settings
from devtools.stripe_server import process as stripe_process

API_KEY = "sk_test_local_demo_0000000000"
WEBHOOK_SECRET = "whsec_local_demo_0000000000"
# The demo dispute left in `resolving`: the bank takes its time with this refund (settle it yourself).
SLOW_REFUND_ORDER = "ord-2007"
DEMO_ACCOUNTS = ("acct_demo_kettles", "acct_demo_bikes")
DEMO_DATABASE = Path("demo.db")


def seed_charges(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as control:
        # The shops' connected accounts (app/demo.py gives each shop one): released escrow goes there.
        for account_id in DEMO_ACCOUNTS:
            control.post("/_control/accounts", data={"id": account_id}).raise_for_status()
        for order_id, total in order_totals().items():
            charge_id = charge_id_of(order_id)
            created = control.post(
                "/_control/charges",
                data={"id": charge_id, "amount": total, "currency": "eur", "transfer_group": order_id},
            )
            created.raise_for_status()
        control.post("/_control/next_refund_pending", data={"charge": charge_id_of(SLOW_REFUND_ORDER)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stripe-port", type=int, default=12111)
    args = parser.parse_args(argv)
    # `kill <pid>` stops the API and the Stripe server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    demo = [sys.executable, "-m", "app.cli", "demo", "--host", args.host, "--port", str(args.port)]
    if os.environ.get("SAV_STRIPE_API_KEY"):
        os.execv(sys.executable, demo)
    try:
        # Its webhooks go to the API once the API is up (below): none is sent into the void meanwhile.
        stripe_server, url = stripe_process.start(
            port=args.stripe_port, webhook_secret=WEBHOOK_SECRET, output=sys.stdout.write
        )
    except stripe_process.NotStarted as exc:
        raise SystemExit(f"demo: {exc}") from None
    try:
        seed_charges(url)
        print(
            f"\nLocal Stripe server on {url}: the worker pays the demo's card refunds and payouts through it\n"
            f"(its transfers and their reversals: curl -s -u {API_KEY}: {url}/v1/transfers).\n"
            f"The refund of the {SLOW_REFUND_ORDER} dispute stays pending at the bank (the dispute waits in "
            f"`resolving`); settle it as the bank would, and its webhook resolves the dispute:\n"
            f"  curl -s {url}/_control/refunds_total?charge={charge_id_of(SLOW_REFUND_ORDER)}\n"
            f"  curl -s -X POST {url}/_control/refunds/<re_id>/settle -d status=succeeded"
        )
        env = {
            **os.environ,
            "SAV_DATABASE_URL": os.environ.get("SAV_DATABASE_URL") or fresh_demo_database(),
            "SAV_STRIPE_API_KEY": API_KEY,
            "SAV_STRIPE_API_BASE": url,
            "SAV_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        release_escrow(env, url)
        webhook_url = f"http://{args.host}:{args.port}/v1/webhooks/stripe"
        httpx.post(f"{url}/_control/webhook", data={"url": webhook_url}, timeout=10).raise_for_status()
        api = subprocess.Popen(demo, env=env)
        try:
            raise SystemExit(api.wait())
        finally:
            stop(api)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        stop(stripe_server)


def release_escrow(env: dict[str, str], url: str) -> None:
    """Migrate and seed (``sav demo`` does both again: a no-op), then the payout story, in this process."""
    settings = load_settings(env)
    migrate(settings)

    async def drain(account_id: str) -> None:
        # Stripe's own API, as the shop's account: its whole available balance paid out to its bank.
        headers = {"Authorization": f"Bearer {API_KEY}", "Stripe-Account": account_id}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as stripe_api:
            balance = (await stripe_api.get("/v1/balance")).raise_for_status().json()
            for available in balance["available"]:
                if available["amount"] > 0:
                    payout = {"amount": available["amount"], "currency": available["currency"]}
                    (await stripe_api.post("/v1/payouts", data=payout)).raise_for_status()

    async def run() -> None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await seed(engine, settings=settings)
            await demo_payouts.tell(engine, settings=settings, drain=drain)
            # Month-end: the provider's export of those movements, with a break of each kind, reconciled.
            await demo_reconciliation.seed_reconciliation(engine, settings=settings)
        finally:
            await engine.dispose()

    asyncio.run(run())


def fresh_demo_database() -> str:
    """A new SQLite file: refunds recorded against an earlier run's (forgotten) Stripe state would fail."""
    for leftover in (DEMO_DATABASE, Path(f"{DEMO_DATABASE}-wal"), Path(f"{DEMO_DATABASE}-shm")):
        leftover.unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///./{DEMO_DATABASE}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
