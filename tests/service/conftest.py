"""Databases for service tests: throwaway PostgreSQL databases on the real server, SQLite files.

The PostgreSQL server is ``TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``), an administrative connection used only to create and drop databases. When it cannot
be reached the tests fail: they are meant to run against the real server, never to be skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine.db import create_engine
from matching_engine.migrate import upgrade, upgrade_async
from tests.service.factories import settings_for

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(statement: str) -> None:
    try:
        connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is unreachable: {error!r}", pytrace=False)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _run_admin(statement: str) -> None:
    # A private loop, so that whatever loop pytest-asyncio has set for the test is left alone.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(_admin(statement))


@contextmanager
def _throwaway_database() -> Iterator[str]:
    name = f"me_test_{secrets.token_hex(6)}"
    _run_admin(f'CREATE DATABASE "{name}"')
    try:
        server = make_url(ADMIN_URL)
        yield server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        _run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database shared by the session; other tests may have migrated it already."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_pg_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``pg_url``, migrated to the newest revision once per session."""
    upgrade(settings_for(pg_url, tmp_path_factory.mktemp("migrated_pg")))
    return pg_url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database of this test's own."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """An empty database of this test's own, on each backend in turn."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest_asyncio.fixture
async def migrated_database(backend_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """``backend_url``, migrated to the newest revision, as an engine disposed afterwards."""
    settings = settings_for(backend_url, tmp_path)
    await upgrade_async(settings)
    database = create_engine(settings)
    try:
        yield database
    finally:
        await database.dispose()
