"""Stored snapshots: the two newest are kept, and only the current engine layout is loaded, on
PostgreSQL and on SQLite alike."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine.journal import SNAPSHOT_FORMAT, Journal
from matching_engine.schema import snapshots

pytestmark = pytest.mark.asyncio


async def test_the_two_newest_snapshots_are_kept(migrated_database: AsyncEngine) -> None:
    journal = Journal(migrated_database)
    assert await journal.snapshot_taken_at() is None
    before = time.time_ns()
    taken = [await journal.save_snapshot(sequence, b"state") for sequence in (10, 20, 30)]
    assert before <= taken[0] <= taken[1] <= taken[2] <= time.time_ns()
    assert await journal.snapshot_taken_at() == taken[2]
    assert await journal.latest_snapshot(at_most=30) == (30, b"state")
    # The one before the newest stays for a recovery whose read models lag behind it.
    assert await journal.latest_snapshot(at_most=29) == (20, b"state")
    assert await journal.latest_snapshot(at_most=19) is None


async def test_a_snapshot_of_another_engine_layout_is_skipped(
    migrated_database: AsyncEngine,
) -> None:
    journal = Journal(migrated_database)
    await journal.save_snapshot(10, b"current")
    async with migrated_database.begin() as connection:
        await connection.execute(
            snapshots.insert().values(
                sequence=20, taken_at=time.time_ns(), format=SNAPSHOT_FORMAT - 1, state=b"old"
            )
        )

    # Recovery starts from the newest snapshot it can load, and replays the rest.
    assert await journal.latest_snapshot(at_most=20) == (10, b"current")
