"""The engine on a PostgreSQL of the test's own, reached through a proxy that can break the network.

A module shares one throwaway cluster (creating it is the slow part), in which a database is
migrated once and serves as the template of a fresh database for each test. Each test puts a
:class:`~loadtests.faultproxy.FaultProxy` of its own in front of the cluster. The engine is served
in-process, its lifespan run as under a server, and reaches its database only through the proxy,
so the test can cut, slow or black-hole the network, or stop the server itself. The test reaches
the database directly, past the proxy, to see what is durable whatever the engine believes.

Deadlines are short so that a broken database is detected, and recovered from, within seconds.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from api.app import create_app
from loadtests.faultproxy import FaultProxy
from loadtests.throwaway import ThrowawayPostgres
from matching_engine.migrate import upgrade
from matching_engine.service import EngineService
from matching_engine.settings import Settings
from tests.api.conftest import GENEROUS_LIMITS, Served, _serve
from tests.api.factories import Caller, order_body

__all__ = ["DEADLINES", "Harness", "Running", "harness_on", "migrated_cluster", "timed", "wait_for"]

T = TypeVar("T")

DEADLINES: dict[str, Any] = {
    "db_breaker_fail_max": 3,
    "db_breaker_reset_s": 1.0,
    "db_statement_timeout_s": 0.5,
    "db_commit_timeout_s": 1.0,
    "db_connect_timeout_s": 0.5,
    "db_pool_timeout_s": 0.5,
    "request_deadline_s": 2.0,
    **GENEROUS_LIMITS,
}
_TEMPLATE = "migrated"


def _url(port: int, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://postgres@127.0.0.1:{port}/{database}"


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement, timeout=5)
    finally:
        await connection.close()


@contextmanager
def migrated_cluster() -> Iterator[ThrowawayPostgres]:
    """A throwaway cluster with a migrated template database; stopped and deleted afterwards."""
    with ThrowawayPostgres() as server:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            runner.run(_execute(_url(server.port, "postgres"), f'CREATE DATABASE "{_TEMPLATE}"'))
        upgrade(Settings(database_url=_url(server.port, _TEMPLATE, "postgresql+asyncpg")))
        yield server
        server.stop("immediate")  # its directory is deleted next: no need for a checkpoint


@asynccontextmanager
async def harness_on(server: ThrowawayPostgres, data_dir: Path) -> AsyncIterator[Harness]:
    """A fresh migrated database on ``server``, behind a proxy of its own."""
    if not server.running:  # a test that stopped it failed before it could start it again
        await asyncio.to_thread(server.start)
    database = f"t_{secrets.token_hex(6)}"
    create = f'CREATE DATABASE "{database}" TEMPLATE "{_TEMPLATE}"'
    await _execute(_url(server.port, "postgres"), create)
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        yield Harness(server, proxy, database, data_dir)


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """The result of ``awaitable`` and the seconds it took."""
    started = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - started


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.02
) -> float:
    """Poll ``check`` until it holds; answer how long that took, or fail after ``timeout_s``."""
    started = time.perf_counter()
    while True:
        if await check():
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(every_s)


@dataclass(frozen=True, slots=True)
class Running:
    """One served application and an HTTP client on it."""

    served: Served
    client: httpx.AsyncClient

    @property
    def service(self) -> EngineService:
        return self.served.service

    async def mode(self, admin: Caller) -> dict[str, Any]:
        response = await self.client.get("/v1/admin/mode", headers=admin.headers)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status

    async def wait_mode(
        self, admin: Caller, timeout_s: float, *, mode: str, database: str
    ) -> float:
        """Wait until the engine reports ``mode`` with the database breaker ``database``."""

        async def reached() -> bool:
            status = await self.mode(admin)
            return bool(status["mode"] == mode and status["database"] == database)

        return await wait_for(reached, timeout_s, f"mode {mode} with the database {database}")

    async def post_order(self, caller: Caller, symbol: str, **fields: Any) -> httpx.Response:
        return await self.client.post(
            "/v1/orders", json=order_body(symbol, **fields), headers=caller.headers
        )

    async def order(self, caller: Caller, order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=caller.headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def orders_with(self, caller: Caller, client_order_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/v1/orders",
            params={"client_order_id": client_order_id, "status": "all"},
            headers=caller.headers,
        )
        assert response.status_code == 200, response.text
        orders: list[dict[str, Any]] = response.json()
        return orders

    async def all_orders(self, caller: Caller) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/v1/orders", params={"status": "all", "limit": 1000}, headers=caller.headers
        )
        assert response.status_code == 200, response.text
        orders: list[dict[str, Any]] = response.json()
        return orders


class Harness:
    """A database of the test's own, the proxy in front of it, and the engine's data directory."""

    def __init__(
        self, server: ThrowawayPostgres, proxy: FaultProxy, database: str, data_dir: Path
    ) -> None:
        self.server = server
        self.proxy = proxy
        self.database = database
        self.data_dir = data_dir

    def settings(self, data_dir: Path | None = None) -> Settings:
        return Settings(
            database_url=_url(self.proxy.port, self.database, "postgresql+asyncpg"),
            data_dir=data_dir or self.data_dir,
            **DEADLINES,
        )

    @asynccontextmanager
    async def serve(self, data_dir: Path | None = None) -> AsyncIterator[Running]:
        """The engine on this database; closing the block closes it as a server shutdown would."""
        app = create_app(self.settings(data_dir), migrate=False)
        async with asynccontextmanager(_serve)(app) as served:
            transport = httpx.ASGITransport(app=served.asgi())
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield Running(served, client)

    # -- the database itself, past the proxy ----------------------------------------------------

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(_url(self.server.port, self.database), timeout=5)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args, timeout=5)
            return rows
        finally:
            await connection.close()

    async def stop_server(self) -> None:
        """A real outage: shut the PostgreSQL server down (the event loop keeps running)."""
        await asyncio.to_thread(self.server.stop)

    async def start_server(self) -> None:
        await asyncio.to_thread(self.server.start)

    @asynccontextmanager
    async def commits_stall(self) -> AsyncIterator[None]:
        """Every commit waits, inside the server, for a synchronous standby that does not exist.

        Such a commit is neither committed nor aborted: other sessions do not see it, and it
        completes when the stall ends, whether or not its client is still there (as with a
        stalled disk or a lost synchronous replica). The block is entered once a commit of the
        test's own does stall, and left once every stalled commit has completed.
        """
        canaries: list[tuple[asyncpg.Connection, asyncio.Task[str]]] = []
        await self._set_standby("ghost")
        try:
            await self._until_a_commit_stalls(canaries)
            yield
        finally:
            await self._set_standby(None)
            await wait_for(self._nothing_stalled, 10.0, "the stalled commits completing")
            for connection, commit in canaries:
                await asyncio.wait([commit], timeout=5)
                await connection.close(timeout=5)

    async def stalled_commits(self) -> int:
        """How many of the engine's commits wait on the stall right now."""
        return await self._stalled("AND application_name = 'matching-engine'")

    async def _until_a_commit_stalls(
        self, canaries: list[tuple[asyncpg.Connection, asyncio.Task[str]]]
    ) -> None:
        """Commit something of our own until a commit stalls: the server applies a new standby
        setting a moment after the reload (its checkpointer does, between other work)."""
        deadline = time.perf_counter() + 10.0
        while time.perf_counter() < deadline:
            connection = await asyncpg.connect(_url(self.server.port, self.database), timeout=5)
            commit = asyncio.create_task(connection.execute("CREATE TEMP TABLE canary AS SELECT 1"))
            canaries.append((connection, commit))
            while not commit.done():
                if await self._stalled(f"AND pid = {connection.get_server_pid()}"):
                    return
                await asyncio.sleep(0.02)
        pytest.fail("commits did not stall within 10 s")

    async def _nothing_stalled(self) -> bool:
        return await self._stalled() == 0

    async def _stalled(self, which: str = "") -> int:
        rows = await self.fetch(
            "SELECT count(*) AS n FROM pg_stat_activity "
            f"WHERE datname = current_database() AND wait_event = 'SyncRep' {which}"
        )
        return int(rows[0]["n"])

    async def _set_standby(self, name: str | None) -> None:
        dsn = _url(self.server.port, self.database)
        if name is None:
            await _execute(dsn, "ALTER SYSTEM RESET synchronous_standby_names")
        else:
            await _execute(dsn, f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
        await _execute(dsn, "SELECT pg_reload_conf()")
