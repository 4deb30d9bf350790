"""The gateway on the real PostgreSQL server, and on the embedded SQLite default.

One application per backend serves the whole session (a recovery costs time): tests stay apart
by using accounts and symbols of their own (see :mod:`tests.api.factories`). Its lifespan runs
exactly as under a server, and each request gets a copy of the lifespan state, as a server gives
it. Tests run on the session's event loop, which owns the service's connections and sequencer.

A test class picks the backends it runs on with
``@pytest.mark.parametrize("backend", BACKENDS, indirect=True)``; PostgreSQL is the default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from api.deps import get_service
from matching_engine.service import EngineService
from matching_engine.settings import Settings
from tests.api.factories import Caller, create_admin, create_instrument, create_trader
from tests.service import conftest as service_fixtures
from tests.service.factories import settings_for

BACKENDS = ["postgresql", "sqlite"]

pg_url = service_fixtures.pg_url


@dataclass(frozen=True, slots=True)
class Served:
    app: FastAPI
    state: dict[str, Any]

    @property
    def service(self) -> EngineService:
        service: EngineService = self.state["service"]
        return service

    def asgi(self) -> ASGIApp:
        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        return with_state


async def _serve(app: FastAPI) -> AsyncIterator[Served]:
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        yield Served(app, dict(state))


# The contract tests share one app per backend and send many requests, bad keys included, from
# one address: limits high enough never to interfere. The limits have tests of their own.
GENEROUS_LIMITS: dict[str, Any] = {
    "rate_limit_orders_burst": 1_000_000,
    "rate_limit_reads_burst": 1_000_000,
    "rate_limit_public_burst": 1_000_000,
    "rate_limit_auth_failures_burst": 1_000_000,
}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgresql_served(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    settings = settings_for(pg_url, tmp_path_factory.mktemp("api_pg"), **GENEROUS_LIMITS)
    async for served in _serve(create_app(settings)):
        yield served


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sqlite_served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("api_sqlite")
    # No database URL: the embedded default, a SQLite file in the data directory.
    settings = Settings(database_url=None, data_dir=data_dir, **GENEROUS_LIMITS)
    async for served in _serve(create_app(settings)):
        yield served


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "postgresql")


@pytest.fixture
def served(request: pytest.FixtureRequest, backend: str) -> Served:
    result: Served = request.getfixturevalue(f"{backend}_served")
    return result


@pytest.fixture
def app(served: Served) -> FastAPI:
    return served.app


@pytest.fixture
def service(served: Served) -> EngineService:
    return served.service


@pytest_asyncio.fixture(loop_scope="session")
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def trader(service: EngineService) -> Caller:
    return await create_trader(service)


@pytest_asyncio.fixture(loop_scope="session")
async def other_trader(service: EngineService) -> Caller:
    return await create_trader(service)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(service: EngineService) -> Caller:
    return await create_admin(service)


@pytest_asyncio.fixture(loop_scope="session")
async def symbol(service: EngineService) -> str:
    """A fresh instrument: tick 0.01, lot 0.001, quantities 0.001 to 1000, no price band."""
    return await create_instrument(service)


@pytest.fixture
def override_service(app: FastAPI) -> Iterator[Callable[[object], None]]:
    """Serve requests from a stand-in for the service; the real one is back after the test."""

    def override(stand_in: object) -> None:
        app.dependency_overrides[get_service] = lambda: stand_in

    yield override
    app.dependency_overrides.pop(get_service, None)
