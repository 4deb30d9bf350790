"""Throwaway servers: they start, stop, crash and come back on the same port, and leave nothing.

One PostgreSQL and one Redis serve the whole module: creating a cluster is the slow part, and
every test leaves its server running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from loadtests.throwaway import ThrowawayPostgres, ThrowawayRedis


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: ThrowawayRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    yield client
    client.close()


async def _fetch(postgres: ThrowawayPostgres, query: str) -> object:
    connection = await asyncpg.connect(postgres.admin_url, timeout=5)
    try:
        return await connection.fetchval(query, timeout=5)
    finally:
        await connection.close()


def _gone(pid: int) -> bool:
    """Neither running nor a zombie: nobody has to reap it any more."""
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.asyncio
async def test_postgres_answers_on_loopback_with_durable_settings(
    postgres: ThrowawayPostgres,
) -> None:
    assert postgres.url == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/postgres"
    assert await _fetch(postgres, "SELECT 1") == 1
    assert await _fetch(postgres, "SHOW listen_addresses") == "127.0.0.1"
    assert await _fetch(postgres, "SHOW fsync") == "on"
    assert await _fetch(postgres, "SHOW synchronous_commit") == "on"


@pytest.mark.asyncio
async def test_postgres_takes_more_settings_and_stays_durable() -> None:
    with ThrowawayPostgres(settings={"shared_buffers": "32MB", "min_wal_size": "256MB"}) as server:
        assert await _fetch(server, "SHOW shared_buffers") == "32MB"
        assert await _fetch(server, "SHOW min_wal_size") == "256MB"
        assert await _fetch(server, "SHOW fsync") == "on"


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_comes_back_on_its_port_with_its_data(
    postgres: ThrowawayPostgres, mode: Literal["fast", "immediate"]
) -> None:
    port = postgres.port
    await _fetch(postgres, f"CREATE TABLE kept_{mode} AS SELECT 7 AS x")

    postgres.stop(mode)
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(postgres.admin_url, timeout=5)
    postgres.start()

    assert postgres.port == port
    assert await _fetch(postgres, f"SELECT x FROM kept_{mode}") == 7


@pytest.mark.asyncio
async def test_postgres_recovers_from_kill_9_with_every_commit(
    postgres: ThrowawayPostgres,
) -> None:
    await _fetch(postgres, "CREATE TABLE committed AS SELECT 1 AS x")
    connection = await asyncpg.connect(postgres.admin_url, timeout=5)
    server_pids = [row["pid"] for row in await connection.fetch("SELECT pid FROM pg_stat_activity")]
    postmaster = postgres.pid

    postgres.kill()
    connection.terminate()

    assert all(_gone(pid) for pid in [postmaster, *server_pids])
    postgres.start()
    assert await _fetch(postgres, "SELECT x FROM committed") == 1


def test_redis_make_errors_refuses_writes_with_oom(
    redis_server: ThrowawayRedis, redis_client: redis.Redis
) -> None:
    redis_client.set("before", "1")

    redis_server.make_errors()
    try:
        with pytest.raises(redis.OutOfMemoryError):
            redis_client.set("during", "1")
        with pytest.raises(redis.OutOfMemoryError):
            redis_client.eval("return redis.call('SET', KEYS[1], '1')", 1, "script")
        assert redis_client.get("before") == b"1"
    finally:
        redis_server.clear_errors()

    assert redis_client.set("after", "1")


def test_redis_comes_back_on_its_port_empty(
    redis_server: ThrowawayRedis, redis_client: redis.Redis
) -> None:
    redis_client.set("lost", "1")

    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        redis_client.ping()
    redis_server.start()

    assert redis_client.ping()
    assert redis_client.get("lost") is None


def test_redis_recovers_from_kill_9(
    redis_server: ThrowawayRedis, redis_client: redis.Redis
) -> None:
    pid = redis_server.pid

    redis_server.kill()

    assert _gone(pid)
    redis_server.start()
    assert redis_client.ping()


def test_leaving_the_block_stops_the_server_and_deletes_its_directory() -> None:
    with ThrowawayRedis() as server:
        pid, root = server.pid, server.log_path.parent
    assert _gone(pid)
    assert not root.exists()
