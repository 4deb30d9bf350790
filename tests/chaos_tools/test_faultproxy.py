"""FaultProxy: each fault looks to a real client as the matching real-world failure does.

The upstream is the machine's PostgreSQL (``TEST_POSTGRES_URL``), reached only through the proxy
and only to read; the threaded proxy is checked with a synchronous Redis client and ``PING``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from loadtests.faultproxy import FaultProxy, ThreadedFaultProxy

POSTGRES = urlsplit(
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
REDIS = urlsplit(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
# What asyncpg raises when its connection is reset, before or after the start-up handshake.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError)


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy(POSTGRES.hostname or "127.0.0.1", POSTGRES.port or 5432) as proxy:
        yield proxy


async def _connect(proxy: FaultProxy) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=POSTGRES.username or "postgres",
        password=POSTGRES.password,
        database=POSTGRES.path.lstrip("/") or "postgres",
        timeout=5,
    )


@asynccontextmanager
async def connected(proxy: FaultProxy) -> AsyncIterator[asyncpg.Connection]:
    connection = await _connect(proxy)
    try:
        yield connection
    finally:
        # terminate(), not close(): closing politely would wait on a blackholed connection.
        connection.terminate()


@pytest.mark.asyncio
async def test_pass_forwards_a_query_and_its_answer(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        assert await connection.fetchval("SELECT 41 + 1", timeout=5) == 42

    assert proxy.counters.connections_accepted == 1
    assert proxy.counters.bytes_to_upstream > 0
    assert proxy.counters.bytes_to_client > 0


@pytest.mark.asyncio
async def test_down_fails_open_and_new_connections_fast(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        proxy.set("down")
        started = time.monotonic()
        with pytest.raises(CONNECTION_ERRORS):
            await connection.fetchval("SELECT 1", timeout=5)
        with pytest.raises(CONNECTION_ERRORS):
            await _connect(proxy)
        assert time.monotonic() - started < 1.0


@pytest.mark.asyncio
async def test_back_to_pass_serves_new_connections(proxy: FaultProxy) -> None:
    proxy.set("down")
    with pytest.raises(CONNECTION_ERRORS):
        await _connect(proxy)

    proxy.set("pass")
    async with connected(proxy) as connection:
        assert await connection.fetchval("SELECT 1", timeout=5) == 1


@pytest.mark.asyncio
async def test_latency_delays_the_query_and_its_answer(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        proxy.set("latency", latency_s=0.3)
        started = time.monotonic()
        assert await connection.fetchval("SELECT 1", timeout=5) == 1
        elapsed = time.monotonic() - started

    assert 2 * 0.3 - 0.01 <= elapsed < 1.5


@pytest.mark.asyncio
async def test_a_new_mode_applies_at_once_to_held_data(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        proxy.set("latency", latency_s=30)
        query = asyncio.create_task(connection.fetchval("SELECT 1", timeout=5))
        await asyncio.sleep(0.1)
        proxy.set("pass")
        async with asyncio.timeout(1):
            assert await query == 1


@pytest.mark.asyncio
async def test_blackhole_holds_a_query_until_the_client_deadline(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        proxy.set("blackhole")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await connection.fetchval("SELECT 1")
        assert proxy.open_connections >= 1

    proxy.set("pass")
    async with connected(proxy) as connection:
        assert await connection.fetchval("SELECT 1", timeout=5) == 1


@pytest.mark.asyncio
async def test_reset_breaks_open_connections_once(proxy: FaultProxy) -> None:
    async with connected(proxy) as connection:
        proxy.set("reset")
        with pytest.raises(CONNECTION_ERRORS):
            await connection.fetchval("SELECT 1", timeout=5)

    assert proxy.mode == "pass"
    async with connected(proxy) as connection:
        assert await connection.fetchval("SELECT 1", timeout=5) == 1


def test_threaded_proxy_is_driven_from_synchronous_code() -> None:
    with ThreadedFaultProxy(REDIS.hostname or "127.0.0.1", REDIS.port or 6379) as proxy:
        client = redis.Redis(
            host="127.0.0.1", port=proxy.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        try:
            assert client.ping()
            proxy.set("down")
            with pytest.raises(redis.ConnectionError):
                client.ping()
            proxy.set("pass")
            assert client.ping()
        finally:
            client.close()

    # The client reconnects on its own, so how many connections it opened is its business.
    assert proxy.counters.connections_reset >= 1
    assert proxy.counters.bytes_to_client > 0
