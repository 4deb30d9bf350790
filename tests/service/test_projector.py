"""The projector: read-model rows are written by transactions of their own, after the journal's
commit, so that no request waits for them; until they land, reads merge them over the tables; a
write that fails is tried again with the rows applied since."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from matching_engine import sequencer
from matching_engine.errors import Refused
from matching_engine.projection import Projection
from matching_engine.service import EngineService
from tests.service.factories import SYMBOL, forgetful_service, place

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def service(backend_url: str, tmp_path: Path) -> AsyncIterator[EngineService]:
    async with forgetful_service(backend_url, tmp_path) as service:
        yield service


def _lag() -> float | None:
    return REGISTRY.get_sample_value("matching_engine_read_model_lag_commands")


async def _projected(service: EngineService) -> None:
    """Wait until the read models reach the engine's sequence."""
    for _ in range(500):
        if await service._journal.projected_sequence() == service.sequence:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the read models never caught up")


async def test_orders_are_acknowledged_and_read_while_the_read_model_write_is_held(
    service: EngineService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _projected(service)  # the instrument's command
    release = asyncio.Event()
    write = service._journal.write_projection

    async def held_write(projection: Projection) -> None:
        await release.wait()
        await write(projection)

    monkeypatch.setattr(service._journal, "write_projection", held_write)
    makers = [await place(service, f"maker-{i}", "sell", 1, 10) for i in range(3)]
    taker = await place(service, "taker", "buy", 3, 10)  # fills all three makers
    assert taker.status == "filled"
    await place(service, "other", "buy", 1, 5)  # the engine forgets closed orders here
    assert all(service.engine.order(int(maker.order_id)) is None for maker in makers)

    # Nothing is in the tables yet, and the reads answer as if it were.
    for maker in makers:
        assert await service._journal.order(maker.account_id, int(maker.order_id)) is None
        read = await service.get_order(maker.account_id, maker.order_id)
        assert (read.status, len(read.fills)) == ("filled", 1)
    assert len(await service.list_fills("taker", symbol=SYMBOL, limit=10)) == 3
    # The five orders are not in the tables, and the gauge says so.
    assert _lag() == 5

    # A write to an order the engine forgot is told apart from one to an unknown order by the
    # rows not written yet, too: 409, not 404.
    with pytest.raises(Refused) as closed:
        await service.cancel_order(makers[0].account_id, makers[0].order_id)
    assert closed.value.code == "order_not_open"

    release.set()
    await _projected(service)
    assert _lag() == 0
    for order in [*makers, taker]:
        stored = await service._journal.order(order.account_id, int(order.order_id))
        assert stored is not None
        assert stored.status == "filled"


async def test_a_failed_read_model_write_is_tried_again_with_the_rows_since(
    service: EngineService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequencer, "_PROJECTION_RETRY_S", 0.05)
    write = service._journal.write_projection
    refused = asyncio.Event()

    async def refused_once(projection: Projection) -> None:
        if not refused.is_set():
            refused.set()
            raise OSError("connection refused")
        await write(projection)

    monkeypatch.setattr(service._journal, "write_projection", refused_once)
    first = await place(service, "a", "buy", 1, 9)
    await refused.wait()
    second = await place(service, "a", "buy", 1, 8)

    await _projected(service)
    for order in (first, second):
        stored = await service._journal.order("a", int(order.order_id))
        assert stored is not None
        assert stored.status == "new"
