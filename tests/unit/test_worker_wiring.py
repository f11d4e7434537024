"""The worker is wired in one place (app.main.build_worker): the server's embedded worker and `sav worker`
run the same jobs, with the payment gateway when one is configured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app import cli, main
from app.db import create_engine
from app.payouts.stripe_escrow import StripeEscrow
from app.settings import Settings, load_settings

EVERY_JOB = [
    "prune-events",
    "prune-idempotency-keys",
    "dispute-timers",
    "deliver-webhooks",
    "reconcile",  # files need no gateway; a provider period without one fails saying so
    "pay-refunds",
    "release-escrow",
    "reverse-transfers",
]
NEEDS_GATEWAY = ("pay-refunds", "release-escrow", "reverse-transfers")


def settings_for(tmp_path: Path, **overrides: str) -> Settings:
    env = {
        "SAV_ENV": "test",
        "SAV_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'wiring.db'}",
        "SAV_JWT_SECRET": "wiring-test-secret-0123456789-0123456789",
        "SAV_ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        **overrides,
    }
    return load_settings(env, dotenv=None)


def job_names(settings: Settings) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        return [job.name for job in main.build_worker(settings, engine).jobs]
    finally:
        asyncio.run(engine.dispose())


def test_the_worker_pays_refunds_only_with_a_payment_provider_configured(tmp_path: Path) -> None:
    assert job_names(settings_for(tmp_path, SAV_STRIPE_API_KEY="sk_test_wiring")) == EVERY_JOB
    assert job_names(settings_for(tmp_path)) == [name for name in EVERY_JOB if name not in NEEDS_GATEWAY]
    gateway = main.payment_gateway(settings_for(tmp_path, SAV_STRIPE_API_KEY="sk_test_wiring"))
    assert isinstance(gateway, StripeEscrow)


def test_the_server_runs_the_worker_build_worker_makes_only_when_asked(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SAV_STRIPE_API_KEY="sk_test_wiring", SAV_RUN_WORKER="true")
    embedded = main.create_app(settings, configure_logs=False).state.worker
    assert [job.name for job in embedded.jobs] == EVERY_JOB
    assert main.create_app(settings_for(tmp_path, SAV_RUN_WORKER="false"), configure_logs=False).state.worker is None


def test_sav_worker_runs_the_worker_build_worker_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, SAV_LOG_LEVEL="WARNING", SAV_LOG_JSON="false")
    ran: list[Settings] = []

    class Built:
        async def run_forever(self) -> None:
            ran.append(settings)

    def build_worker(given: Settings, engine: Any) -> Built:
        assert given is settings
        return Built()

    monkeypatch.setattr(main, "build_worker", build_worker)
    monkeypatch.setattr(cli, "get_settings_or_exit", lambda: settings)
    monkeypatch.setattr(cli, "check_schema_or_exit", lambda _: None)
    monkeypatch.setattr("app.observability.configure_logging", lambda *_, **__: None)
    cli.main(["worker"])
    assert ran == [settings]
