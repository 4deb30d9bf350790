"""Stored snapshots: the two newest are kept, and only the current engine layout is loaded, on
PostgreSQL and on SQLite alike."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from matching_engine.db import create_engine
from matching_engine.journal import SNAPSHOT_FORMAT, Journal
from matching_engine.migrate import upgrade_async
from matching_engine.schema import snapshots
from tests.service.factories import settings_for


@pytest.fixture(params=["fresh_pg_url", "sqlite_url"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


@pytest.mark.asyncio
async def test_the_two_newest_snapshots_are_kept(url: str, tmp_path: Path) -> None:
    settings = settings_for(url, tmp_path)
    await upgrade_async(settings)
    database = create_engine(settings)
    try:
        journal = Journal(database)
        assert await journal.snapshot_taken_at() is None
        before = time.time_ns()
        taken = [await journal.save_snapshot(sequence, b"state") for sequence in (10, 20, 30)]
        assert before <= taken[0] <= taken[1] <= taken[2] <= time.time_ns()
        assert await journal.snapshot_taken_at() == taken[2]
        assert await journal.latest_snapshot(at_most=30) == (30, b"state")
        # The one before the newest stays for a recovery whose read models lag behind it.
        assert await journal.latest_snapshot(at_most=29) == (20, b"state")
        assert await journal.latest_snapshot(at_most=19) is None
    finally:
        await database.dispose()


@pytest.mark.asyncio
async def test_a_snapshot_of_another_engine_layout_is_skipped(url: str, tmp_path: Path) -> None:
    settings = settings_for(url, tmp_path)
    await upgrade_async(settings)
    database = create_engine(settings)
    try:
        journal = Journal(database)
        await journal.save_snapshot(10, b"current")
        async with database.begin() as connection:
            await connection.execute(
                snapshots.insert().values(
                    sequence=20, taken_at=time.time_ns(), format=SNAPSHOT_FORMAT - 1, state=b"old"
                )
            )

        # Recovery starts from the newest snapshot it can load, and replays the rest.
        assert await journal.latest_snapshot(at_most=20) == (10, b"current")
    finally:
        await database.dispose()
