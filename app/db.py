"""Database engine, the declarative base, and the schema-version check.

One engine per application. SQLite is the embedded default: WAL, a busy timeout, foreign keys on, and
every transaction opened with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing with
"database is locked" halfway through a request. PostgreSQL (psycopg 3) gets a real pool.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from litestar.di import NamedDependency
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.errors import ServiceUnavailable

logger = logging.getLogger("sav.db")
ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = ROOT / "alembic.ini"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTimeUTC(timezone=True)}


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    # hide_parameters: statement parameters (message bodies, promo codes, webhook secrets) never appear in
    # error messages or logs; an IntegrityError's text is logged with its traceback.
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, hide_parameters=True, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: two requests that read-then-write the same row are serialized
        # (SQLite's stand-in for SELECT ... FOR UPDATE) and never deadlock on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# The plugin's own session dependency, wrapped by request_transaction (the one handlers ask for).
PLUGIN_SESSION_KEY = "db_session_unmanaged"


async def request_transaction(db_session_unmanaged: NamedDependency[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The ``db_session`` dependency: one request, one transaction, committed before the response starts.

    advanced-alchemy's ``autocommit`` handler commits while the response is being sent and only logs a
    failed commit (at DEBUG): the client was told "done" for data never saved. Here the commit runs after
    the handler returned and its response was built, still inside Litestar's exception handling, so a
    failed commit becomes a 503 problem document. A handler that raises never reaches the commit. Either
    way the plugin's before-send handler closes the session, which rolls back whatever was not committed.
    """
    yield db_session_unmanaged
    try:
        await db_session_unmanaged.commit()
    except Exception:
        logger.exception("commit failed; the response is replaced by a 503 and nothing was saved")
        raise ServiceUnavailable(
            "the change could not be saved and nothing was changed; retry the request",
            code="database.commit_failed",
        ) from None


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


@functools.cache
def migration_head() -> str | None:
    """The newest revision in alembic/versions, read once per process (at startup, by the schema check):
    the scripts ship with the code, so they do not change under a running process, and ``/ready`` must not
    rescan the directory, blocking the event loop, on every probe."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def ensure_schema_current(engine: AsyncEngine) -> None:
    """Refuse to serve an unmigrated or outdated database, naming the command that fixes it."""
    head = migration_head()
    current = await current_revision(engine)
    if current != head:
        state = "not migrated" if current is None else f"at revision {current}, code expects {head}"
        raise ServiceUnavailable(
            f"database schema is {state}: run `alembic upgrade head` from the repository root "
            "(or `sav serve --migrate`)",
            code="database.not_migrated",
        )


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """The dialect's own INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

    On PostgreSQL a conflicting row that another transaction has inserted but not yet committed makes
    the statement wait for that transaction, which is what makes "first one wins" safe under concurrency.
    """
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
