"""Test databases: every test that touches SQL runs on SQLite and on PostgreSQL.

Each run makes throwaway databases (a temporary SQLite file; a fresh PostgreSQL database created from
``SAV_TEST_DATABASE_URL``), builds their schema with ``alembic upgrade head`` (so a model without its
migration fails here), and drops them afterwards. Tests isolate themselves with unique ids rather than
by truncating, which keeps the suite fast and also exercises the database with unrelated rows around.

When no PostgreSQL answers, its tests are skipped with the reason shown, unless
``SAV_TEST_REQUIRE_POSTGRES=1`` (CI) makes that an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from sqlalchemy.engine import make_url

from app.auth import issue_token
from app.settings import Settings, load_settings

PG_ADMIN_URL = os.environ.get("SAV_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("SAV_TEST_REQUIRE_POSTGRES", "") in {"1", "true", "yes"}
TEST_SECRET = "test-secret-for-the-suite-0123456789abcdef"
METRICS_TOKEN = "metrics-token-for-the-suite-0123"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_available() -> str | None:
    try:
        with psycopg.connect(_libpq(PG_ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} is not reachable: {exc}".strip()


def migrate(url: str) -> None:
    from alembic import command

    from app.db import alembic_config

    config = alembic_config(url)
    config.attributes["skip_logging_config"] = True
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    reason = _pg_available()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"SAV_TEST_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    return PG_ADMIN_URL


def create_pg_database(admin_url: str, prefix: str = "sav_test") -> tuple[str, Callable[[], None]]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "sav.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate(url)
        yield url
        return
    admin = request.getfixturevalue("pg_admin_url")
    url, drop = create_pg_database(admin)
    try:
        migrate(url)
        yield url
    finally:
        drop()


def make_settings(db_url: str, **overrides: str) -> Settings:
    env = {
        "SAV_ENV": "test",
        "SAV_DATABASE_URL": db_url,
        "SAV_JWT_SECRET": TEST_SECRET,
        "SAV_LOG_JSON": "false",
        "SAV_LOG_LEVEL": "WARNING",
        "SAV_RUN_WORKER": "false",
        **overrides,
    }
    return load_settings(env, dotenv=None)


@pytest.fixture(scope="session")
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The suite's webhook receivers listen on 127.0.0.1 (tests/api/test_webhooks.py).
    return make_settings(
        db_url,
        SAV_ATTACHMENTS_DIR=str(tmp_path_factory.mktemp("attachments")),
        SAV_WEBHOOKS_ALLOW_PRIVATE="true",
        SAV_METRICS_TOKEN=METRICS_TOKEN,
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    from app.main import create_app

    with TestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as test_client:
        yield test_client


class Tokens:
    """Authorization headers for any caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, role: str, sub: str | None = None, seller_id: str = "", **extra: Any) -> dict[str, str]:
        token = issue_token(
            self.settings, sub=sub or f"{role}-{uuid.uuid4().hex[:8]}", role=role, seller_id=seller_id, **extra
        )
        return {"Authorization": f"Bearer {token}"}

    @property
    def marketplace(self) -> dict[str, str]:
        return self("marketplace", "marketplace")


@pytest.fixture(scope="session")
def auth(settings: Settings) -> Tokens:
    return Tokens(settings)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def money(amount: int, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def order_body(buyer_id: str, seller_id: str, *, unit: int = 2500, qty: int = 2, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "buyer_id": buyer_id,
        "seller_id": seller_id,
        "currency": "EUR",
        "total": money(unit * qty),
        "commission": money(unit * qty // 10),
        "lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": qty, "unit_price": money(unit)}],
        "payment": {"provider": "stripe", "charge_id": f"ch_{uuid.uuid4().hex[:12]}"},
    }
    body.update(over)
    return body


class World:
    """Factories for the marketplace a test needs: shops, buyers, orders — all with fresh ids."""

    def __init__(self, client: TestClient[Any], auth: Tokens) -> None:
        self.client = client
        self.auth = auth

    def seller(self, **settings: Any) -> str:
        seller_id = uid("shop")
        body: dict[str, Any] = {"name": f"Shop {seller_id}"}
        if settings:
            body["settings"] = settings
        response = self.client.put(f"/v1/sellers/{seller_id}", json=body, headers=self.auth.marketplace)
        assert response.status_code == 201, response.text
        return seller_id

    def order(self, buyer_id: str | None = None, seller_id: str | None = None, **over: Any) -> dict[str, Any]:
        order_id = uid("ord")
        body = order_body(buyer_id or uid("buyer"), seller_id or self.seller(), **over)
        response = self.client.put(f"/v1/orders/{order_id}", json=body, headers=self.auth.marketplace)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def world(client: TestClient[Any], auth: Tokens) -> World:
    return World(client, auth)


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'sav.db'}"
