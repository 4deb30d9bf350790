"""The gateway served in-process for resilience tests, with the settings each test needs.

The shared app of the API tests cannot serve here: modes are engine-wide and survive restarts
(they are replayed from the audit trail in the database), and limits are what these tests vary.
So these apps run on throwaway databases of their own on the machine's PostgreSQL server (one
per test module, or per test), one app at a time on each; and a client can pretend to come from
any address, since some limits are per client address.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.api.conftest import GENEROUS_LIMITS, Served, _serve
from tests.api.factories import Caller, assert_problem, instrument_body
from tests.service import conftest as service_fixtures
from tests.service.factories import settings_for

__all__ = [
    "GENEROUS_LIMITS",
    "add_instrument",
    "assert_unavailable",
    "client_of",
    "fresh_pg_url",
    "metric",
    "module_pg_url",
    "put_mode",
    "running",
    "timed",
]

fresh_pg_url = service_fixtures.fresh_pg_url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database for the whole test module."""
    with service_fixtures._throwaway_database() as url:
        yield url


@asynccontextmanager
async def running(url: str, data_dir: Path, **settings: Any) -> AsyncIterator[Served]:
    """The app on the database at ``url``, started and stopped by its own lifespan."""
    app = create_app(settings_for(url, data_dir, **settings))
    async with asynccontextmanager(_serve)(app) as served:
        yield served


def client_of(served: Served, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of ``served`` whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=served.asgi(), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and how long it took, in seconds."""
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


async def put_mode(
    client: httpx.AsyncClient,
    admin: Caller,
    mode: str,
    symbol: str | None = None,
    reason: str = "resilience test",
) -> dict[str, Any]:
    """Set a mode through the API; it must be accepted. Returns the new state."""
    response = await client.put(
        "/v1/admin/mode",
        json={"mode": mode, "symbol": symbol, "reason": reason},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def add_instrument(client: httpx.AsyncClient, admin: Caller, **overrides: Any) -> str:
    """List a fresh instrument through the API; returns its symbol."""
    response = await client.post(
        "/v1/admin/instruments", json=instrument_body(**overrides), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    symbol: str = response.json()["symbol"]
    return symbol


def assert_unavailable(response: httpx.Response, code: str) -> None:
    """A 503 problem with this code, and a ``Retry-After`` of whole seconds."""
    assert_problem(response, 503, code)
    assert int(response.headers["retry-after"]) >= 1


def metric(exposition: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None when absent."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
