"""The migrations build exactly the schema of ``matching_engine.schema``, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, pool, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from matching_engine.db import create_engine
from matching_engine.migrate import alembic_config, current, downgrade, upgrade, upgrade_async
from matching_engine.schema import admin_audit, metadata
from tests.service.factories import settings_for

# Reading the scripts does not touch the database, so any URL does.
HEAD = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_current_head()


def _shape(connection: Connection) -> dict[str, Any]:
    """Every table as the database reports it: columns with nullability, index and key names."""
    inspector = inspect(connection)
    shape = {}
    for table in inspector.get_table_names():
        primary_key = inspector.get_pk_constraint(table)
        shape[table] = {
            "columns": {
                column["name"]: column["nullable"] for column in inspector.get_columns(table)
            },
            # PostgreSQL also reports the index behind each unique constraint.
            "indexes": {
                index["name"]
                for index in inspector.get_indexes(table)
                if "duplicates_constraint" not in index
            },
            "unique": {unique["name"] for unique in inspector.get_unique_constraints(table)},
            "primary_key": (primary_key["name"], primary_key["constrained_columns"]),
        }
    return shape


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _inspect(url: str) -> tuple[dict[str, Any], list[Any]]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_shape), await connection.run_sync(_differences)
    finally:
        await engine.dispose()


def _expected_shape() -> dict[str, Any]:
    return {
        table.name: {
            "columns": {column.name: column.nullable for column in table.columns},
            "indexes": {index.name for index in table.indexes},
            "unique": {
                constraint.name
                for constraint in table.constraints
                if constraint.__visit_name__ == "unique_constraint"
            },
            "primary_key": (
                table.primary_key.name,
                [column.name for column in table.primary_key.columns],
            ),
        }
        for table in metadata.sorted_tables
    }


def _assert_at_head(shape: dict[str, Any], differences: list[Any]) -> None:
    assert set(shape) == set(metadata.tables) | {"alembic_version"}
    for table, expected in _expected_shape().items():
        assert shape[table] == expected, table
    assert differences == []


@pytest.mark.asyncio
async def test_upgrade_from_empty_creates_every_table_of_the_schema_on_postgresql(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)

    assert await upgrade_async(settings) == HEAD

    _assert_at_head(*await _inspect(fresh_pg_url))


def test_downgrade_one_step_and_back_on_postgresql(fresh_pg_url: str, tmp_path: Path) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)
    upgrade(settings)

    assert downgrade(settings, "-1") == "0001"
    shape, _ = asyncio.run(_inspect(fresh_pg_url))
    assert "admin_audit" not in shape
    assert "journal" in shape

    assert upgrade(settings) == HEAD
    _assert_at_head(*asyncio.run(_inspect(fresh_pg_url)))


def test_downgrade_to_base_drops_everything_and_upgrade_rebuilds_it_on_postgresql(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)
    upgrade(settings)

    assert downgrade(settings, "base") is None
    shape, _ = asyncio.run(_inspect(fresh_pg_url))
    assert set(shape) == {"alembic_version"}

    assert upgrade(settings) == HEAD
    _assert_at_head(*asyncio.run(_inspect(fresh_pg_url)))


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_the_audit_trail_refuses_updates_and_deletes(
    backend: str, fresh_pg_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    url = fresh_pg_url if backend == "postgresql" else sqlite_url
    settings = settings_for(url, tmp_path)
    await upgrade_async(settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                admin_audit.insert().values(
                    audit_id="a1", at=1, actor="cli", action="mode.set", reason="drill"
                )
            )
        for statement in (
            admin_audit.update().values(reason="rewritten"),
            admin_audit.delete(),
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as connection:
                    await connection.execute(statement)
        async with engine.connect() as connection:
            assert await connection.scalar(select(admin_audit.c.reason)) == "drill"
    finally:
        await engine.dispose()


def test_upgrade_is_a_no_op_at_head(fresh_pg_url: str, tmp_path: Path) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)
    upgrade(settings)

    assert upgrade(settings) == HEAD
    assert current(settings) == HEAD


@pytest.mark.asyncio
async def test_upgrade_creates_the_same_schema_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path)

    assert await upgrade_async(settings) == HEAD

    _assert_at_head(*await _inspect(sqlite_url))


def test_downgrade_and_upgrade_again_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path)
    upgrade(settings)

    assert downgrade(settings, "base") is None
    assert upgrade(settings) == HEAD
    _assert_at_head(*asyncio.run(_inspect(sqlite_url)))


def test_the_sqlite_directory_is_created_on_first_upgrade(tmp_path: Path) -> None:
    data_dir = tmp_path / "does" / "not" / "exist"
    settings = settings_for(f"sqlite+aiosqlite:///{data_dir / 'engine.db'}", data_dir)

    assert upgrade(settings) == HEAD
    assert (data_dir / "engine.db").is_file()


@pytest.mark.asyncio
async def test_the_sync_helpers_refuse_to_run_inside_an_event_loop(
    sqlite_url: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="upgrade_async"):
        upgrade(settings_for(sqlite_url, tmp_path))
