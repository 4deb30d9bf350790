"""The database engine: one place that knows the difference between PostgreSQL and SQLite.

PostgreSQL goes through asyncpg with a bounded pool and deadlines on every step: connect, pool
checkout, statement. ``synchronous_commit`` stays ``on``: an acknowledged command is on disk.

The embedded default is a SQLite file through aiosqlite in WAL mode with ``synchronous=FULL``,
which syncs the log at every commit, so an acknowledged command survives a power loss there too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from matching_engine.settings import Settings

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.effective_database_url
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": settings.db_statement_timeout_s})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    statement_ms = str(int(settings.db_statement_timeout_s * 1000))
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_s,
        # No ping before each checkout: it costs a round trip per transaction. A connection that
        # died with the server fails its first statement instead; the breaker counts it and
        # SQLAlchemy invalidates the pool, so the next checkout connects afresh.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_statement_timeout_s,
            "server_settings": {
                "statement_timeout": statement_ms,
                "idle_in_transaction_session_timeout": str(int(statement_ms) * 2),
                "synchronous_commit": "on",
                "application_name": "matching-engine",
            },
        },
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
