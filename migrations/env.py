"""The Alembic environment, in the shape of Alembic's async template.

The database URL comes from ``config.attributes["sqlalchemy.url"]`` when the caller gives one
(``matching_engine.migrate`` always does; tests point it at their own database), otherwise from
the ``ME_`` settings, so that migrations and the server always agree on the database.

SQLite cannot alter most of a table in place, so on SQLite every operation runs in batch mode
(copy the table, swap it in); the same migration scripts then serve both databases.
"""

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from matching_engine.schema import metadata
from matching_engine.settings import Settings

config = context.config
target_metadata = metadata


def database_url() -> str:
    url: str | None = config.attributes.get("sqlalchemy.url")
    return url if url is not None else Settings().effective_database_url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def run_migrations_offline() -> None:
    """Emit the migrations as SQL on stdout instead of running them (``alembic upgrade --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=is_sqlite(url),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await connectable.dispose()


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
