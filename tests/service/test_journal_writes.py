"""The write of a batch: all of it or none of it, on PostgreSQL's one statement and on SQLite's
transaction alike; a journal row is never overwritten or skipped. The read models' writes: rows
and progress together, harmless when repeated. And recovery's writes of the
read-model rows a crash left unwritten: in chunks that land in order while the replay goes on; a
chunk that fails to write fails recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine import recovery
from matching_engine.core import (
    AddInstrument,
    Command,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderType,
    Side,
)
from matching_engine.journal import Journal
from matching_engine.projection import Projection
from matching_engine.schema import fills, journal, orders, trades
from tests.service.factories import settings_for

pytestmark = pytest.mark.asyncio

INSTRUMENT = Instrument(
    symbol="JW-USD",
    tick_size=Decimal("0.01"),
    lot_size=Decimal("1"),
    min_quantity=Decimal("1"),
    max_quantity=Decimal("1000"),
)


def order(side: Side, account: str, timestamp: int) -> NewOrder:
    return NewOrder(account, "JW-USD", side, OrderType.LIMIT, 5, 10_000, timestamp=timestamp)


@pytest_asyncio.fixture
async def store(migrated_database: AsyncEngine) -> AsyncIterator[Journal]:
    store = Journal(migrated_database)
    yield store
    await store.close()


async def counts(database: AsyncEngine) -> dict[str, int]:
    async with database.connect() as connection:
        return {
            table.name: int(await connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in (journal, orders, fills, trades)
        }


async def test_a_batch_is_written_whole_and_one_whose_sequence_is_taken_not_at_all(
    store: Journal, migrated_database: AsyncEngine
) -> None:
    commands = [AddInstrument(INSTRUMENT, timestamp=1), order(Side.SELL, "maker", 2)]
    await store.append(list(enumerate(commands, start=1)))
    assert await counts(migrated_database) == {"journal": 2, "orders": 0, "fills": 0, "trades": 0}

    # A batch that reuses sequence 2 (another writer's commit that landed after its doubt) is
    # refused by the journal's key, and its other row (sequence 3) does not stay either.
    late = order(Side.SELL, "late", 3)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.append([(3, late), (2, late)])

    assert [sequence async for sequence, _ in store.replay(after=0)] == [1, 2]
    # The store still writes after a refused batch (on PostgreSQL, on a new connection).
    await store.append([(3, late)])
    assert (await counts(migrated_database))["journal"] == 3


async def test_read_model_rows_land_with_their_progress_and_may_be_written_twice(
    store: Journal, migrated_database: AsyncEngine
) -> None:
    engine = MatchingEngine()
    commands = [
        AddInstrument(INSTRUMENT, timestamp=1),
        order(Side.SELL, "maker", 2),
        order(Side.BUY, "taker", 3),  # trades with the maker: an order, two fills, a trade
    ]
    projection = Projection()
    for sequence, command in enumerate(commands, start=1):
        projection.record(engine, sequence, engine.submit(command))
    await store.append(list(enumerate(commands, start=1)))

    await store.write_projection(projection)
    written = await counts(migrated_database)
    assert written == {"journal": 3, "orders": 2, "fills": 2, "trades": 1}
    assert await store.projected_sequence() == 3
    # Again, as after a write whose outcome was unknown: upserts and kept rows, no duplicates.
    await store.write_projection(projection)
    assert await counts(migrated_database) == written
    # Progress moves on without rows (commands that changed no order).
    await store.write_projection(Projection(sequence=4))
    assert await store.projected_sequence() == 4


def crossing_flow(count: int) -> list[Command]:
    """Sells that rest, each taken by the buy after it: an order, two fills and a trade a pair."""
    flow: list[Command] = [AddInstrument(INSTRUMENT, timestamp=1)]
    for index in range(count):
        side = Side.SELL if index % 2 == 0 else Side.BUY
        flow.append(order(side, f"account-{index % 3}", timestamp=index + 2))
    return flow


async def journal_only(store: Journal, commands: list[Command]) -> None:
    """The journal of ``commands`` with none of their read-model rows, as after a crash."""
    await store.append(list(enumerate(commands, start=1)))
    assert await store.projected_sequence() == 0


async def order_rows(database: AsyncEngine) -> list[tuple[int, str, str]]:
    async with database.connect() as connection:
        statement = select(orders.c.order_id, orders.c.status, orders.c.filled_quantity)
        rows = await connection.execute(statement.order_by(orders.c.order_id))
        return [(int(row[0]), row[1], row[2]) for row in rows]


async def test_the_rows_a_crash_left_unwritten_are_written_in_chunks(
    store: Journal,
    migrated_database: AsyncEngine,
    backend_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recovery, "_REPLAY_FLUSH_ROWS", 4)  # a chunk every two pairs or so
    written: list[int] = []
    write = store.write_projection

    async def recording_write(projection: Projection) -> None:
        written.append(projection.sequence)
        await write(projection)

    monkeypatch.setattr(store, "write_projection", recording_write)
    commands = crossing_flow(40)
    await journal_only(store, commands)

    engine, report = await recovery.recover(store, settings_for(backend_url, tmp_path))

    assert report.replayed == len(commands)
    assert len(written) > 5
    assert written == sorted(written)
    assert written[-1] == len(commands)
    assert await store.projected_sequence() == len(commands)
    assert await counts(migrated_database) == {
        "journal": 41,
        "orders": 40,
        "fills": 40,
        "trades": 20,
    }
    # Each order's row is its final state in the recovered engine.
    expected = []
    for order_id in range(2, len(commands) + 1):
        recovered = engine.order(order_id)
        assert recovered is not None
        expected.append((order_id, recovered.status.value, str(recovered.filled)))
    assert await order_rows(migrated_database) == expected


async def test_a_chunk_that_fails_to_write_fails_recovery(
    store: Journal, backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "_REPLAY_FLUSH_ROWS", 4)
    calls = 0

    async def failing_second_write(projection: Projection) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("the database went away")

    monkeypatch.setattr(store, "write_projection", failing_second_write)
    await journal_only(store, crossing_flow(40))

    with pytest.raises(ConnectionError, match="went away"):
        await recovery.recover(store, settings_for(backend_url, tmp_path))
    assert calls == 2  # nothing was written after the failed chunk
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert all(task.done() for task in others)
