"""Test databases: every test that touches SQL runs on SQLite and on PostgreSQL.

Each run makes throwaway databases (a temporary SQLite file; a fresh PostgreSQL database created from
``SAV_TEST_DATABASE_URL``), builds their schema with ``alembic upgrade head`` (so a model without its
migration fails here), and drops them afterwards. Tests isolate themselves with unique ids rather than
by truncating, which keeps the suite fast and also exercises the database with unrelated rows around.

When no PostgreSQL answers, its tests are skipped with the reason shown, unless
``SAV_TEST_REQUIRE_POSTGRES=1`` (CI) makes that an error. Tests on PostgreSQL carry the ``postgresql``
mark, so ``-m "not postgresql"`` runs SQLite only (``make test-fast``).

Fixtures live here; what tests build with (settings, tokens, factories) is in tests/factories.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.settings import Settings
from tests.databases import PG_ADMIN_URL, REQUIRE_PG, create_pg_database, migrate, pg_unavailable
from tests.factories import METRICS_TOKEN, Tokens, World, make_settings


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    reason = pg_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"SAV_TEST_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
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


@pytest.fixture(scope="session")
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The suite's webhook receivers listen on 127.0.0.1 (Receiver in tests/factories.py).
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


@pytest.fixture(scope="session")
def auth(settings: Settings) -> Tokens:
    return Tokens(settings)


@pytest.fixture
def world(client: TestClient[Any], auth: Tokens) -> World:
    return World(client, auth)


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'sav.db'}"
