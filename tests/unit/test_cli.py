from __future__ import annotations

import os
import subprocess
import sys

from app.auth import TokenDecoder
from app.db import ROOT
from app.settings import load_settings

SECRET = "cli-test-secret-0123456789-0123456789-abc"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, "SAV_JWT_SECRET": SECRET, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_sav_token_mints_a_token_the_service_accepts() -> None:
    result = run_cli("token", "--role", "seller", "--sub", "u-1", "--seller-id", "shop-1", "--name", "Inès")
    assert result.returncode == 0, result.stderr
    settings = load_settings({"SAV_JWT_SECRET": SECRET}, dotenv=None)
    actor = TokenDecoder(settings).decode(result.stdout.strip())
    assert (actor.id, actor.role, actor.seller_id, actor.name) == ("u-1", "seller", "shop-1", "Inès")


def test_sav_token_refuses_a_seller_without_shop_and_unknown_roles() -> None:
    assert "--seller-id" in run_cli("token", "--role", "seller", "--sub", "u").stderr
    assert "unknown role" in run_cli("token", "--role", "root", "--sub", "u").stderr


def test_sav_demo_seeds_and_prints_a_token_per_role(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = run_cli("demo", "--no-serve", SAV_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    for role in ("buyer", "seller", "agent", "arbitrator", "finance", "admin", "marketplace"):
        assert f"\n  {role} " in result.stdout
    # Seeding twice is harmless.
    assert run_cli("demo", "--no-serve", SAV_DATABASE_URL=url).returncode == 0
    # A dispute in each status, once.
    import sqlite3

    with sqlite3.connect(tmp_path / "demo.db") as db:
        statuses = sorted(row[0] for row in db.execute("SELECT status FROM disputes"))
        kinds = {
            row[0]: row[1] for row in db.execute("SELECT kind, status FROM refunds WHERE source_key LIKE 'demo:%'")
        }
    # Card refunds wait for a payment provider; credit notes and promo codes are issued at once.
    assert kinds == {"partial": "pending", "full": "pending", "credit": "succeeded", "promo_code": "succeeded"}
    every = ["open", "awaiting_buyer", "escalated", "in_review", "awaiting_return", "return_in_transit"]
    assert statuses == sorted([*every, "resolving", "resolved", "closed"])
