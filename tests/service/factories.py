"""Small builders for service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from matching_engine.core import Instrument
from matching_engine.migrate import upgrade_async
from matching_engine.service import EngineService
from matching_engine.settings import Settings
from matching_engine.views import OrderView

# The instrument of :func:`service_with_symbol`: whole units, up to 100.
SYMBOL = "FG-USD"


def settings_for(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on the database at ``url``, with ``tmp_path`` as the data directory.

    Explicit values win over any ``ME_`` variable in the environment.
    """
    return Settings(database_url=url, data_dir=tmp_path, **overrides)


@asynccontextmanager
async def service_with_symbol(
    url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[EngineService]:
    """A migrated service on ``url`` with these settings and :data:`SYMBOL` listed."""
    settings = settings_for(url, tmp_path, **overrides)
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


def forgetful_service(url: str, tmp_path: Path) -> AbstractAsyncContextManager[EngineService]:
    """:func:`service_with_symbol`, remembering one closed order only: reads of the others come
    from the tables and the rows not written yet, never the engine."""
    return service_with_symbol(url, tmp_path, closed_order_capacity=1)


async def place(
    service: EngineService, account: str, side: str, quantity: int, price: int | None
) -> OrderView:
    """A limit order on :data:`SYMBOL` at ``price``, or a market order when it is None."""
    view, _ = await service.place_order(
        account, symbol=SYMBOL, side=side, type="limit" if price else "market",
        quantity=Decimal(quantity), price=None if price is None else Decimal(price),
        time_in_force=None, post_only=False, stp="none", client_order_id=None,
    )  # fmt: skip
    return view
