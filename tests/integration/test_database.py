"""Schema comes from Alembic only; the service refuses a database it was not migrated for."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from litestar.testing import TestClient

from app.db import ROOT, create_engine
from app.models import metadata
from tests.factories import make_settings


def test_migrations_match_the_models(db_url: str) -> None:
    """A model changed without a migration shows up here as a diff."""

    async def diff() -> list[Any]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


def test_app_refuses_to_start_on_an_unmigrated_database(tmp_sqlite_url: str) -> None:
    from app.errors import ServiceUnavailable
    from app.main import create_app

    app = create_app(make_settings(tmp_sqlite_url), configure_logs=False)
    with pytest.raises(BaseException) as info, TestClient(app):  # noqa: PT011 - startup wraps it in a group
        pass
    errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [info.value]
    assert any(isinstance(e, ServiceUnavailable) and "alembic upgrade head" in e.detail for e in errors)


def test_ready_names_the_command_when_the_schema_is_behind(tmp_sqlite_url: str) -> None:
    """/ready reports 503 with the fix if the database falls behind while the process runs."""
    from alembic import command

    from app.db import alembic_config
    from app.main import create_app
    from tests.databases import migrate

    migrate(tmp_sqlite_url)
    app = create_app(make_settings(tmp_sqlite_url), configure_logs=False)
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        config = alembic_config(tmp_sqlite_url)
        config.attributes["skip_logging_config"] = True
        command.downgrade(config, "base")
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.json()["code"] == "database.not_migrated"
        assert "alembic upgrade head" in response.json()["detail"]


def test_ready_does_not_rescan_the_migration_scripts_on_each_probe(tmp_sqlite_url: str, monkeypatch: Any) -> None:
    """The head revision is read at startup; a probe only asks the database where it is."""
    from app import db
    from app.main import create_app
    from tests.databases import migrate

    migrate(tmp_sqlite_url)
    app = create_app(make_settings(tmp_sqlite_url), configure_logs=False)
    with TestClient(app) as client:

        def rescan(*_: Any, **__: Any) -> Any:
            raise AssertionError("the migration scripts were read again")

        monkeypatch.setattr(db.ScriptDirectory, "from_config", rescan)
        assert [client.get("/ready").status_code for _ in range(2)] == [200, 200]


def test_sav_serve_on_an_unmigrated_database_exits_with_the_command_to_run(tmp_sqlite_url: str) -> None:
    env = {**os.environ, "SAV_DATABASE_URL": tmp_sqlite_url, "SAV_JWT_SECRET": "x" * 40}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "alembic upgrade head" in result.stderr
    assert "Traceback" not in result.stderr


def test_downgrade_and_upgrade_round_trip(tmp_sqlite_url: str) -> None:
    from alembic import command

    from app.db import alembic_config
    from tests.databases import migrate

    migrate(tmp_sqlite_url)
    config = alembic_config(tmp_sqlite_url)
    config.attributes["skip_logging_config"] = True
    command.downgrade(config, "base")
    command.upgrade(config, "head")
