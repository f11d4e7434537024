"""Throwaway test databases: a PostgreSQL database created from ``SAV_TEST_DATABASE_URL`` and dropped
afterwards, and the schema built by ``alembic upgrade head`` (so a model without its migration fails)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("SAV_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("SAV_TEST_REQUIRE_POSTGRES", "") in {"1", "true", "yes"}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
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


def create_pg_database(admin_url: str, prefix: str = "sav_test") -> tuple[str, Callable[[], None]]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop
