"""Closed orders the engine no longer remembers: its closed-order history is a small cache, and
the read model answers for everything older, with the same answers the engine would give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from matching_engine.core import Instrument
from matching_engine.errors import NotFound, Refused
from matching_engine.migrate import upgrade_async
from matching_engine.service import EngineService
from matching_engine.views import OrderView
from tests.service.factories import settings_for

pytestmark = pytest.mark.asyncio

SYMBOL = "FO-USD"


@pytest_asyncio.fixture
async def service(backend_url: str, tmp_path: Path) -> AsyncIterator[EngineService]:
    settings = settings_for(backend_url, tmp_path, closed_order_capacity=1)
    await upgrade_async(settings)
    service = await EngineService.open(settings)
    try:
        await service.add_instrument(
            Instrument(SYMBOL, Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        yield service
    finally:
        await service.close()


async def _place(
    service: EngineService, account: str, side: str, quantity: int, price: int | None
) -> OrderView:
    view, _ = await service.place_order(
        account, symbol=SYMBOL, side=side, type="limit" if price else "market",
        quantity=Decimal(quantity), price=None if price is None else Decimal(price),
        time_in_force=None, post_only=False, stp="none", client_order_id=None,
    )  # fmt: skip
    return view


async def test_a_forgotten_canceled_order_answers_as_a_remembered_one(
    service: EngineService,
) -> None:
    first = await _place(service, "a", "buy", 1, 10)
    await service.cancel_order("a", first.order_id)
    for _ in range(3):  # later closes push the first one out of the engine's history
        later = await _place(service, "a", "buy", 1, 10)
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
    makers = [await _place(service, f"m{i}", "sell", 1, 10 + i) for i in range(3)]

    taker = await _place(service, "t", "buy", 3, None)

    assert (taker.status, taker.filled_quantity) == ("filled", Decimal(3))
    for maker in makers:
        stored = await service.get_order(maker.account_id, maker.order_id)
        assert (stored.status, stored.filled_quantity, len(stored.fills)) == (
            "filled",
            Decimal(1),
            1,
        )
