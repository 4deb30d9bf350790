"""Closed orders the engine no longer remembers: its closed-order history is a small cache, and
the read model answers for everything older, with the same answers the engine would give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from matching_engine.errors import NotFound, Refused
from matching_engine.service import EngineService
from tests.service.factories import forgetful_service, place

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def service(backend_url: str, tmp_path: Path) -> AsyncIterator[EngineService]:
    async with forgetful_service(backend_url, tmp_path) as service:
        yield service


async def test_a_forgotten_canceled_order_answers_as_a_remembered_one(
    service: EngineService,
) -> None:
    first = await place(service, "a", "buy", 1, 10)
    await service.cancel_order("a", first.order_id)
    for _ in range(3):  # later closes push the first one out of the engine's history
        later = await place(service, "a", "buy", 1, 10)
        await service.cancel_order("a", later.order_id)
    assert service.engine.order(int(first.order_id)) is None

    stored = await service.get_order("a", first.order_id)
    assert (stored.status, stored.reason) == ("canceled", "user_canceled")
    for refused in (
        service.cancel_order("a", first.order_id),
        service.amend_order("a", first.order_id, price=Decimal(11), quantity=None),
    ):
        with pytest.raises(Refused) as error:
            await refused
        assert error.value.code == "order_not_open"
    with pytest.raises(NotFound):
        await service.cancel_order("b", first.order_id)
    with pytest.raises(NotFound):
        await service.get_order("b", first.order_id)


async def test_one_command_that_closes_more_orders_than_the_history_holds_answers_them_all(
    service: EngineService,
) -> None:
    makers = [await place(service, f"m{i}", "sell", 1, 10 + i) for i in range(3)]

    taker = await place(service, "t", "buy", 3, None)

    assert (taker.status, taker.filled_quantity) == ("filled", Decimal(3))
    for maker in makers:
        stored = await service.get_order(maker.account_id, maker.order_id)
        assert (stored.status, stored.filled_quantity, len(stored.fills)) == (
            "filled",
            Decimal(1),
            1,
        )
