"""An order that comes with its rate-limit decision still on its way (an *admission*): it is
journaled only once the decision allows it, never when it refuses, and never after its request
stopped waiting (:meth:`matching_engine.sequencer.Sequencer.submit`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from matching_engine.errors import RateLimited, Unavailable
from matching_engine.ratelimit import Decision
from matching_engine.service import EngineService
from matching_engine.views import OrderView
from tests.service.factories import SYMBOL, service_with_symbol

pytestmark = pytest.mark.asyncio

ALLOWED = Decision(True, limit=5, remaining=4, retry_after_s=0, reset_after_s=0.2, backend="redis")
REFUSED = Decision(False, limit=5, remaining=0, retry_after_s=0.7, reset_after_s=1, backend="redis")


@pytest_asyncio.fixture
async def service(backend_url: str, tmp_path: Path) -> AsyncIterator[EngineService]:
    async with service_with_symbol(backend_url, tmp_path, request_deadline_s=0.3) as service:
        yield service


def place(
    service: EngineService, admission: asyncio.Future[Decision]
) -> asyncio.Task[tuple[OrderView, bool]]:
    order = service.place_order(
        "trader", symbol=SYMBOL, side="buy", type="limit", quantity=Decimal(1),
        price=Decimal(10), time_in_force=None, post_only=False, stp="none",
        client_order_id=None, admission=admission,
    )  # fmt: skip
    return asyncio.create_task(order)


async def journaled(service: EngineService) -> int:
    return await service._journal.last_sequence()


async def test_an_order_waits_for_its_decision_and_is_journaled_once_allowed(
    service: EngineService,
) -> None:
    before = await journaled(service)
    admission = asyncio.get_running_loop().create_future()

    placing = place(service, admission)
    await asyncio.sleep(0.1)  # several batches' time: none of them may take it
    assert not placing.done()
    assert await journaled(service) == before

    admission.set_result(ALLOWED)
    order, replayed = await placing
    assert (order.status, replayed) == ("new", False)
    assert await journaled(service) == service.sequence == before + 1


async def test_a_refused_order_is_rate_limited_and_changes_nothing(
    service: EngineService,
) -> None:
    before = await journaled(service)
    admission = asyncio.get_running_loop().create_future()

    placing = place(service, admission)
    admission.set_result(REFUSED)
    with pytest.raises(RateLimited) as refused:
        await placing

    assert refused.value.decision == REFUSED
    assert await journaled(service) == service.sequence == before
    assert service.engine.open_orders("trader") == []


async def test_an_order_decided_after_its_deadline_is_never_journaled(
    service: EngineService,
) -> None:
    before = await journaled(service)
    admission = asyncio.get_running_loop().create_future()

    with pytest.raises(Unavailable, match="deadline"):
        await place(service, admission)
    admission.set_result(ALLOWED)  # too late: nobody waits for the answer any more
    await asyncio.sleep(0.1)

    assert await journaled(service) == service.sequence == before


async def test_a_decision_already_in_is_used_at_once(service: EngineService) -> None:
    admission = asyncio.get_running_loop().create_future()
    admission.set_result(REFUSED)

    with pytest.raises(RateLimited):
        await place(service, admission)


async def test_a_cancelled_decision_is_a_503_not_a_journaled_order(
    service: EngineService,
) -> None:
    before = await journaled(service)
    admission = asyncio.get_running_loop().create_future()

    placing = place(service, admission)
    admission.cancel()  # the limiter closing under the request
    with pytest.raises(Unavailable, match="shutting down"):
        await placing
    assert await journaled(service) == before
