"""The gateway served in-process for the observability tests, and a reader of ``/metrics``.

Prometheus metrics live in the process-wide registry, which every app of the test session
shares: a test compares a scrape taken after its requests with one taken before them, and uses
symbols of its own for the metrics labelled by symbol.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from matching_engine import logs
from matching_engine.settings import Settings
from tests.api.conftest import GENEROUS_LIMITS, Served
from tests.api.factories import (
    Caller,
    assert_problem,
    create_admin,
    create_instrument,
    create_trader,
    order_body,
)
from tests.service import conftest as service_fixtures
from tests.service.factories import settings_for


@dataclass(frozen=True, slots=True)
class Scrape:
    """One ``/metrics`` answer, parsed: the value of each sample by name and labels."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; NaN when there is none."""
        return self.samples.get((name, frozenset(labels.items())), math.nan)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples that have at least these labels (0 when there are none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and wanted <= sample_labels
        )


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return Scrape.parse(response.text)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Served, httpx.AsyncClient]]:
    """The app on ``settings``, through its lifespan, and a client that talks to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        served = Served(app, dict(state))
        transport = httpx.ASGITransport(app=served.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield served, client


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a scripted run of trading and administration left in the metrics and logs.

    On ``symbol`` (tick 0.01, lot 0.001): a sell of 2 at 101 rests; a buy of 0.5 at 101 trades
    with it; a post-only buy at 101.50 would cross and is rejected; a buy at 100.005 is refused
    with 422 ``invalid_tick``; a buy of 1 at 99 rests. Then an admin sets the engine to
    cancel-only, a new order is refused with 503 ``cancel_only``, and the admin sets it back to
    normal. On ``other_symbol`` one trader places orders at 90 until the sixth is rate limited
    (429). Every request sends ``X-Request-ID: obs-<step>``.
    """

    symbol: str
    other_symbol: str
    before: Scrape
    after: Scrape
    log_lines: list[str]
    api_keys: list[str]
    request_ids: list[str]

    def delta(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)


# Five writes at once per account (burst 4), then one every 100 s: the sixth write is limited.
SCENARIO_LIMITS = {"rate_limit_orders_per_s": 0.01, "rate_limit_orders_burst": 4}


@asynccontextmanager
async def captured_logs() -> AsyncIterator[io.StringIO]:
    """Every log record at info or above, as the configured JSON lines, while the block runs."""
    root = logging.getLogger()
    level, previous = root.level, logs._handler
    stream = io.StringIO()
    handler = logs.configure_logging("info", json=True, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logs._handler = previous


async def _run_scenario(served: Served, client: httpx.AsyncClient) -> Scenario:
    service = served.service
    symbol = await create_instrument(service)
    other_symbol = await create_instrument(service)
    seller, buyer, late, flooder = [await create_trader(service) for _ in range(4)]
    admin = await create_admin(service)
    request_ids: list[str] = []

    async def send(
        step: str, method: str, path: str, caller: Caller, **options: Any
    ) -> httpx.Response:
        request_id = f"obs-{step}"
        request_ids.append(request_id)
        headers = {**caller.headers, "X-Request-ID": request_id}
        response = await client.request(method, path, headers=headers, **options)
        # A snapshot is stored in the background, and one due while another is under way waits
        # for a later batch: waiting here puts every snapshot at the sequence it is due.
        await service.snapshot_stored()
        return response

    async def order(step: str, caller: Caller, **fields: Any) -> httpx.Response:
        return await send(step, "POST", "/v1/orders", caller, json=order_body(symbol, **fields))

    before = await scrape(client)
    resting = await order("sell", seller, side="sell", price="101", quantity="2")
    assert resting.status_code == 201, resting.text
    taker = await order("buy", buyer, price="101", quantity="0.5")
    assert taker.json()["status"] == "filled"
    crossing = await order("post-only", buyer, price="101.50", post_only=True)
    assert crossing.json()["status"] == "rejected"
    assert_problem(await order("bad-tick", buyer, price="100.005"), 422, "invalid_tick")
    assert (await order("bid", buyer, price="99")).status_code == 201

    cancel_only = {"mode": "cancel_only", "reason": "observability drill"}
    response = await send("cancel-only", "PUT", "/v1/admin/mode", admin, json=cancel_only)
    assert response.status_code == 200, response.text
    assert_problem(await order("refused", late, price="98"), 503, "cancel_only")
    normal = {"mode": "normal", "reason": "drill over"}
    response = await send("normal", "PUT", "/v1/admin/mode", admin, json=normal)
    assert response.status_code == 200, response.text

    body = order_body(other_symbol, price="90")
    for attempt in range(5):
        response = await send(f"flood-{attempt}", "POST", "/v1/orders", flooder, json=body)
        assert response.status_code == 201, response.text
    response = await send("flood-limited", "POST", "/v1/orders", flooder, json=body)
    assert_problem(response, 429, "rate_limited")

    # A key of the right shape that no account has: refused, and never logged.
    stranger = Caller("acc_unknown", "me_0123456789abcdef_" + "A" * 43)
    response = await send("stranger", "GET", "/v1/orders", stranger)
    assert_problem(response, 401, "unauthenticated")

    callers = [seller, buyer, late, flooder, admin, stranger]
    return Scenario(
        symbol=symbol,
        other_symbol=other_symbol,
        before=before,
        after=await scrape(client),
        log_lines=[],
        api_keys=[caller.api_key for caller in callers],
        request_ids=request_ids,
    )


@pytest.fixture(scope="package")
def scenario_pg_url() -> Iterator[str]:
    """A PostgreSQL database of the scenario's own."""
    with service_fixtures._throwaway_database() as url:
        yield url


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def scenario(scenario_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The scripted run, once for the package."""
    overrides = {**GENEROUS_LIMITS, **SCENARIO_LIMITS, "snapshot_every_commands": 5}
    data_dir = tmp_path_factory.mktemp("observability")
    settings = settings_for(scenario_pg_url, data_dir, **overrides)
    async with captured_logs() as stream, running(settings) as (served, client):
        outcome = await _run_scenario(served, client)
    return dataclasses.replace(outcome, log_lines=stream.getvalue().splitlines())
