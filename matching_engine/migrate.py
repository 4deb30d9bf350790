"""Applying the Alembic migrations from code: the CLI's ``migrate``, ``serve`` at start-up, tests.

There is no ``alembic.ini``. The configuration is built here: the scripts are the installed
``migrations`` package, and the database URL travels in ``config.attributes`` (which
``migrations/env.py`` reads before it falls back to the settings).

``env.py`` drives the async engine with ``asyncio.run``, so the synchronous helpers here must run
where no event loop is running: the CLI, a sync test, a worker thread. Async code calls
``upgrade_async``, which runs the same upgrade in a worker thread.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from matching_engine.settings import Settings

__all__ = ["alembic_config", "current", "downgrade", "upgrade", "upgrade_async"]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    config.set_main_option("path_separator", "os")
    config.attributes["sqlalchemy.url"] = url
    return config


def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the database up to ``revision``; return the revision it is at afterwards."""
    _refuse_running_loop()
    _ensure_sqlite_directory(settings)
    command.upgrade(alembic_config(settings.effective_database_url), revision)
    return current(settings)


def downgrade(settings: Settings, revision: str) -> str | None:
    """Migrate the database down to ``revision`` (``"base"``, ``"-1"``, an id); return where it is."""
    _refuse_running_loop()
    command.downgrade(alembic_config(settings.effective_database_url), revision)
    return current(settings)


def current(settings: Settings) -> str | None:
    """The revision the database is at, or ``None`` when it has never been migrated."""
    _refuse_running_loop()
    return asyncio.run(_current_revision(settings.effective_database_url))


async def upgrade_async(settings: Settings, revision: str = "head") -> str | None:
    """``upgrade`` for async callers: it runs in a worker thread, where ``env.py`` may start its loop."""
    return await asyncio.to_thread(upgrade, settings, revision)


async def _current_revision(url: str) -> str | None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_revision_of)
    finally:
        await engine.dispose()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _refuse_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "migrations run their own event loop; from async code use upgrade_async() "
        "or asyncio.to_thread()"
    )


def _ensure_sqlite_directory(settings: Settings) -> None:
    if not settings.is_sqlite:
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = make_url(settings.effective_database_url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
