"""The write of a batch: all of it or none of it, on PostgreSQL's one statement and on SQLite's
transaction alike; a journal row is never overwritten or skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine.core import (
    AddInstrument,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderType,
    Side,
)
from matching_engine.db import create_engine
from matching_engine.journal import Journal
from matching_engine.migrate import upgrade_async
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


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest_asyncio.fixture
async def database(url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    settings = settings_for(url, tmp_path)
    await upgrade_async(settings)
    database = create_engine(settings)
    yield database
    await database.dispose()


@pytest_asyncio.fixture
async def store(database: AsyncEngine) -> AsyncIterator[Journal]:
    store = Journal(database)
    yield store
    await store.close()


async def counts(database: AsyncEngine) -> dict[str, int]:
    async with database.connect() as connection:
        return {
            table.name: int(await connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in (journal, orders, fills, trades)
        }


async def test_a_batch_is_written_whole_and_one_whose_sequence_is_taken_not_at_all(
    store: Journal, database: AsyncEngine
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

    await store.append(list(enumerate(commands[:2], start=1)), Projection())
    await store.append([(3, commands[2])], projection)
    written = await counts(database)
    assert written == {"journal": 3, "orders": 2, "fills": 2, "trades": 1}
    assert await store.projected_sequence() == 3

    # A batch that reuses sequence 3 (another writer's commit that landed after its doubt) is
    # refused by the journal's key, and none of its other rows stay.
    later = order(Side.SELL, "late", 4)
    late_rows = Projection()
    late_rows.record(engine, 4, engine.submit(later))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.append([(3, later)], late_rows)

    assert await counts(database) == written
    assert await store.projected_sequence() == 3
    assert [sequence async for sequence, _ in store.replay(after=0)] == [1, 2, 3]
    # The store still writes after a refused batch (on PostgreSQL, on a new connection).
    await store.append([(4, later)], Projection(sequence=4))
    assert (await counts(database))["journal"] == 4
