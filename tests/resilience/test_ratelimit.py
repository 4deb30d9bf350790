"""Rate limiting: GCRA in Redis (the real server) and in process, and the fallback between them.

Tests on the shared Redis use keys of their own (a random scope) and delete them. Tests that
break Redis start a throwaway ``redis-server`` of their own and stop it by its process id.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from redis.asyncio import ConnectionPool, Redis

from loadtests.throwaway import ThrowawayRedis
from matching_engine.ratelimit import (
    Decision,
    Limit,
    LocalLimiter,
    RateLimiter,
    _check_arguments,
    _script_call,
)
from matching_engine.settings import Settings
from tests.leaks import collector_off

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEN_PER_S_BURST_4 = Limit(rate=10, burst=4)
SOCKET_TIMEOUT_S = 0.1
BREAKER_RESET_S = 0.3


@pytest.fixture
def scope() -> str:
    return f"test-{secrets.token_hex(6)}"


@pytest_asyncio.fixture
async def limiter(scope: str) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(Settings(redis_url=REDIS_URL))
    yield limiter
    await limiter.close()
    async with Redis.from_url(REDIS_URL) as redis:
        keys = [key async for key in redis.scan_iter(match=f"me:rl:{scope}:*")]
        if keys:
            await redis.delete(*keys)


@pytest.fixture
def throwaway() -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis() as server:
        yield server


def throwaway_settings(server: ThrowawayRedis) -> Settings:
    return Settings(
        redis_url=server.url,
        redis_socket_timeout_s=SOCKET_TIMEOUT_S,
        redis_breaker_fail_max=3,
        redis_breaker_reset_s=BREAKER_RESET_S,
        rate_limit_fallback_factor=0.5,
    )


async def timed_checks(
    limiter: RateLimiter, scope: str, key: str, limit: Limit, count: int
) -> tuple[list[Decision], float]:
    """``count`` checks one after the other, and the slowest one's duration."""
    decisions, slowest = [], 0.0
    for _ in range(count):
        started = time.perf_counter()
        decisions.append(await limiter.check(scope, key, limit))
        slowest = max(slowest, time.perf_counter() - started)
    return decisions, slowest


@asynccontextmanager
async def hung_redis(server: ThrowawayRedis, scope: str) -> AsyncIterator[RateLimiter]:
    """A limiter that has used ``server``, which then stops answering (SIGSTOP) until the end."""
    limiter = RateLimiter(throwaway_settings(server))
    pid = server.pid
    try:
        assert (await limiter.check(scope, "warm", TEN_PER_S_BURST_4)).backend == "redis"
        os.kill(pid, signal.SIGSTOP)
        yield limiter
    finally:
        os.kill(pid, signal.SIGCONT)
        await limiter.close()


def backend_gauge(backend: str) -> float | None:
    return REGISTRY.get_sample_value("matching_engine_rate_limiter_backend", {"backend": backend})


async def _script_calls(url: str) -> int:
    async with Redis.from_url(url) as redis:
        stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


# -- GCRA on the real Redis ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redis_allows_the_burst_then_limits_until_the_interval_passes(
    limiter: RateLimiter, scope: str
) -> None:
    decisions = [await limiter.check(scope, "trader", TEN_PER_S_BURST_4) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert {d.limit for d in decisions} == {5}
    assert {d.backend for d in decisions} == {"redis"}
    refused = decisions[-1]
    assert 0.05 < refused.retry_after_s <= 0.1
    assert 0.4 < refused.reset_after_s <= 0.5

    await asyncio.sleep(refused.retry_after_s + 0.005)
    again = [await limiter.check(scope, "trader", TEN_PER_S_BURST_4) for _ in range(2)]
    assert [d.allowed for d in again] == [True, False]
    assert limiter.backend_state == "redis"
    # Keys are separate: another trader still has the whole burst.
    assert (await limiter.check(scope, "other", TEN_PER_S_BURST_4)).remaining == 4


@pytest.mark.asyncio
async def test_concurrent_checks_on_one_key_never_let_more_through(
    limiter: RateLimiter, scope: str
) -> None:
    limit = Limit(rate=50, burst=19)
    started = time.perf_counter()
    decisions = await asyncio.gather(*(limiter.check(scope, "hot", limit) for _ in range(100)))
    elapsed = time.perf_counter() - started
    allowed = sum(d.allowed for d in decisions)
    assert {d.backend for d in decisions} == {"redis"}
    assert 20 <= allowed <= 20 + 1 + int(elapsed * limit.rate)


@pytest.mark.asyncio
async def test_checks_that_arrive_together_share_one_redis_call_and_decide_in_order(
    limiter: RateLimiter, scope: str
) -> None:
    await limiter.check(scope, "warm-up", TEN_PER_S_BURST_4)  # the script is loaded
    before = await _script_calls(REDIS_URL)
    checks = [(key, cost) for key in ("a", "b", "a") for cost in (1, 2)]
    decisions = await asyncio.gather(
        *(limiter.check(scope, key, TEN_PER_S_BURST_4, cost) for key, cost in checks)
    )
    calls = await _script_calls(REDIS_URL) - before

    # Other clients of the shared server may call scripts meanwhile: at most a few.
    assert 1 <= calls < len(checks)
    # "a" in arrival order: 1 of 5 (4 left), 2 more (2 left), 1 more (1 left), 2 more refused.
    by_key = [(key, d.allowed, d.remaining) for (key, _), d in zip(checks, decisions, strict=True)]
    assert [entry for entry in by_key if entry[0] == "a"] == [
        ("a", True, 4),
        ("a", True, 2),
        ("a", True, 1),
        ("a", False, 0),
    ]
    assert [entry for entry in by_key if entry[0] == "b"] == [("b", True, 4), ("b", True, 2)]


# Holds a Redis server busy for about 100 ms: it runs one script at a time.
_BUSY_LUA = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 100000
return 1
"""


@pytest.mark.asyncio
async def test_checks_that_come_while_a_call_is_in_flight_share_the_next_call(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    limiter = RateLimiter(
        throwaway_settings(throwaway).model_copy(update={"redis_socket_timeout_s": 1.0})
    )
    try:
        await limiter.check(scope, "warm-up", TEN_PER_S_BURST_4)
        before = await _script_calls(throwaway.url)
        async with Redis.from_url(throwaway.url) as busy:
            held = asyncio.create_task(busy.eval(_BUSY_LUA, 0))
            await asyncio.sleep(0.01)  # the busy script is running
            first = asyncio.create_task(limiter.check(scope, "first", TEN_PER_S_BURST_4))
            later = []
            for index in range(5):  # each in a pass of the event loop of its own
                await asyncio.sleep(0.005)
                later.append(
                    asyncio.create_task(limiter.check(scope, f"later-{index}", TEN_PER_S_BURST_4))
                )
            decisions = await asyncio.gather(first, *later)
            await held
        calls = await _script_calls(throwaway.url) - before

        assert {d.backend for d in decisions} == {"redis"}
        assert calls == 1 + 2  # the busy script, the first check, and the five later ones
    finally:
        await limiter.close()


@pytest.mark.asyncio
async def test_a_server_that_lost_the_script_gets_its_text_and_still_decides(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    limiter = RateLimiter(throwaway_settings(throwaway))
    try:
        assert (await limiter.check(scope, "trader", TEN_PER_S_BURST_4)).remaining == 4
        async with Redis.from_url(throwaway.url) as admin:
            await admin.script_flush()

        again = [await limiter.check(scope, "trader", TEN_PER_S_BURST_4) for _ in range(2)]

        assert [(d.backend, d.remaining) for d in again] == [("redis", 3), ("redis", 2)]
        assert limiter.backend_state == "redis"
    finally:
        await limiter.close()


@pytest.mark.asyncio
async def test_lua_and_local_implementations_decide_alike(limiter: RateLimiter, scope: str) -> None:
    """One schedule of (milliseconds from start, cost), run in real time on Redis and on a
    controlled clock locally. Every instant sits at least 40 ms from a decision boundary, so
    that scheduling delays on the Redis side cannot change an outcome."""
    limit = Limit(rate=10, burst=3)
    schedule = (
        [(0, 1)] * 5
        + [(150, 1)] * 2
        + [(360, 2), (360, 1)]
        + [(560, 1)] * 3
        + [(660, 3), (1400, 4), (1400, 1), (1450, 1), (1660, 2), (1700, 5)]
    )
    now_us = 0
    local = LocalLimiter(clock=lambda: now_us)
    expected = []
    for at_ms, cost in schedule:
        now_us = at_ms * 1000
        expected.append(local.check(scope, "vector", limit, cost))

    observed = []
    start = time.monotonic()
    for at_ms, cost in schedule:
        await asyncio.sleep(max(0.0, start + at_ms / 1000 - time.monotonic()))
        observed.append(await limiter.check(scope, "vector", limit, cost))

    assert {d.backend for d in observed} == {"redis"}
    assert [(d.allowed, d.remaining) for d in observed] == [
        (d.allowed, d.remaining) for d in expected
    ]
    assert {d.allowed for d in expected} == {True, False}
    for seen, wanted in zip(observed, expected, strict=True):
        assert seen.retry_after_s == pytest.approx(wanted.retry_after_s, abs=0.03)
        assert seen.reset_after_s == pytest.approx(wanted.reset_after_s, abs=0.03)
    assert expected[-1].retry_after_s == float("inf")  # costs more than the whole burst


# -- Falling back to the local limiter -----------------------------------------------------------


@pytest.mark.asyncio
async def test_when_redis_stops_the_local_fallback_decides_then_redis_again(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    limiter = RateLimiter(throwaway_settings(throwaway))
    try:
        assert (await limiter.check(scope, "warm", TEN_PER_S_BURST_4)).backend == "redis"
        throwaway.stop()

        decisions, slowest = await timed_checks(limiter, scope, "trader", TEN_PER_S_BURST_4, 20)
        assert slowest < SOCKET_TIMEOUT_S
        assert {d.backend for d in decisions} == {"local"}
        # Half the limit (fallback factor 0.5): 5/s with a burst of 2, so 3 at once.
        assert sum(d.allowed for d in decisions) == 3
        assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)
        assert limiter.backend_state == "local_fallback"
        assert backend_gauge("local_fallback") == 1
        assert backend_gauge("redis") == 0
        limited = REGISTRY.get_sample_value(
            "matching_engine_rate_limit_decisions_total",
            {"scope": scope, "outcome": "limited", "backend": "local"},
        )
        assert limited == 17

        throwaway.start()
        await asyncio.sleep(BREAKER_RESET_S * 1.2)
        back = await limiter.check(scope, "trader", TEN_PER_S_BURST_4)
        assert back.backend == "redis"
        assert limiter.backend_state == "redis"
        assert backend_gauge("redis") == 1
    finally:
        await limiter.close()


@pytest.mark.asyncio
async def test_when_redis_hangs_each_check_is_bounded_by_the_socket_timeout(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    async with hung_redis(throwaway, scope) as limiter:
        decisions, slowest = await timed_checks(limiter, scope, "trader", TEN_PER_S_BURST_4, 10)
        assert slowest < SOCKET_TIMEOUT_S + 0.05
        assert {d.backend for d in decisions} == {"local"}
        assert 0 < sum(d.allowed for d in decisions) < len(decisions)
        assert limiter.backend_state == "local_fallback"


@pytest.mark.asyncio
async def test_checks_queued_behind_a_call_that_times_out_fall_back_with_it(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    """Not after a second timeout of their own: the Redis that just failed gets no new call."""
    async with hung_redis(throwaway, scope) as limiter:
        started = time.perf_counter()
        first = asyncio.create_task(limiter.check(scope, "first", TEN_PER_S_BURST_4))
        await asyncio.sleep(SOCKET_TIMEOUT_S / 2)  # the first call is in flight
        queued = asyncio.create_task(limiter.check(scope, "queued", TEN_PER_S_BURST_4))
        decisions = await asyncio.gather(first, queued)
        elapsed = time.perf_counter() - started

    assert {d.backend for d in decisions} == {"local"}
    assert elapsed < SOCKET_TIMEOUT_S + 0.05


@pytest.mark.asyncio
async def test_a_check_that_failed_leaves_no_cycle_for_the_collector(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    """As for the journal's waits (tests/service/test_durability_edges.py): the futures a failed
    call failed go with their requests."""
    async with hung_redis(throwaway, scope) as limiter:
        with collector_off() as failed_futures:
            decisions = await asyncio.gather(
                *(limiter.check(scope, f"trader-{i}", TEN_PER_S_BURST_4) for i in range(3))
            )
            leftovers = failed_futures(Exception)

    assert {d.backend for d in decisions} == {"local"}
    assert leftovers == []


@pytest.mark.asyncio
async def test_checks_after_close_fall_back_without_connecting_again(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    limiter = RateLimiter(throwaway_settings(throwaway))
    assert (await limiter.check(scope, "before", TEN_PER_S_BURST_4)).backend == "redis"
    await limiter.close()
    before = await _script_calls(throwaway.url)

    decision = await limiter.check(scope, "after", TEN_PER_S_BURST_4)

    assert decision.backend == "local"
    assert await _script_calls(throwaway.url) == before


@pytest.mark.asyncio
async def test_the_batch_call_runs_in_no_request_context(limiter: RateLimiter, scope: str) -> None:
    """The call serves every request of its batch: logs and traces from it belong to none."""
    request = contextvars.ContextVar[str]("request")
    seen: list[str | None] = []
    redis = limiter._redis
    assert redis is not None
    run_script = redis._run_script

    async def recording(keys: list[str], arguments: list[bytes]) -> list[int]:
        seen.append(request.get(None))
        return await run_script(keys, arguments)

    redis._run_script = recording  # type: ignore[method-assign]
    request.set("first request")

    assert (await limiter.check(scope, "trader", TEN_PER_S_BURST_4)).backend == "redis"
    assert seen == [None]


@pytest.mark.asyncio
async def test_when_redis_answers_errors_the_local_fallback_decides(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    async with Redis.from_url(throwaway.url) as admin:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
    limiter = RateLimiter(throwaway_settings(throwaway))
    try:
        decisions, _ = await timed_checks(limiter, scope, "trader", TEN_PER_S_BURST_4, 20)
        assert {d.backend for d in decisions} == {"local"}
        assert 0 < sum(d.allowed for d in decisions) < len(decisions)
        assert limiter.backend_state == "local_fallback"
    finally:
        await limiter.close()


def decisions_counted(scope: str, backend: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "matching_engine_rate_limit_decisions_total",
            {"scope": scope, "outcome": "allowed", "backend": backend},
        )
        or 0.0
    )


@pytest.mark.asyncio
async def test_decide_answers_a_future_that_redis_settles_later(
    limiter: RateLimiter, scope: str
) -> None:
    """The caller goes on while Redis decides; the decision is counted once, when it comes."""
    decided = limiter.decide(scope, "trader", TEN_PER_S_BURST_4)

    assert not decided.done()  # the call has not even been sent: it goes at the end of this pass
    assert decisions_counted(scope, "redis") == 0
    decision = await decided
    assert (decision.allowed, decision.remaining, decision.backend) == (True, 4, "redis")
    assert decisions_counted(scope, "redis") == 1


@pytest.mark.asyncio
async def test_when_redis_fails_the_future_gets_the_fallback_decision_not_the_error(
    throwaway: ThrowawayRedis, scope: str
) -> None:
    limiter = RateLimiter(throwaway_settings(throwaway))
    try:
        throwaway.stop()
        decided = limiter.decide(scope, "trader", TEN_PER_S_BURST_4)
        decision = await decided
        assert (decision.allowed, decision.backend) == (True, "local")
        assert decisions_counted(scope, "local") == 1
    finally:
        await limiter.close()


@pytest.mark.asyncio
async def test_without_redis_the_decision_is_there_at_once(scope: str) -> None:
    limiter = RateLimiter(Settings(redis_url=None))
    decided = limiter.decide(scope, "trader", TEN_PER_S_BURST_4)
    assert decided.done()
    assert decided.result().backend == "local"
    with pytest.raises(ValueError, match="at least 1"):
        limiter.decide(scope, "trader", TEN_PER_S_BURST_4, cost=0)


@pytest.mark.asyncio
async def test_without_a_redis_url_the_local_limiter_enforces_the_full_limits(
    scope: str,
) -> None:
    limiter = RateLimiter(Settings(redis_url=None))
    try:
        decisions = [await limiter.check(scope, "trader", TEN_PER_S_BURST_4) for _ in range(6)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False]
        assert {d.backend for d in decisions} == {"local"}
        assert limiter.backend_state == "local"
        assert limiter.breaker is None
        assert backend_gauge("local") == 1
    finally:
        await limiter.close()


# -- The local limiter and limits ----------------------------------------------------------------


def test_local_limiter_memory_is_bounded() -> None:
    now_us = 0
    local = LocalLimiter(max_keys=10, clock=lambda: now_us)
    limit = Limit(rate=1, burst=0)
    assert not [local.check("s", "hot", limit) for _ in range(2)][-1].allowed
    for n in range(100):
        local.check("s", f"client-{n}", limit)
        local.check("s", "hot", limit)  # recently used keys are kept
        assert len(local) <= 10
    assert not local.check("s", "hot", limit).allowed

    now_us += 5_000_000  # every TAT is in the past now: the same as absent
    local.check("s", "new", limit)
    for n in range(10):
        local.check("s", f"later-{n}", limit)
    assert len(local) <= 10
    assert local.check("s", "hot", limit).allowed


def test_limits_are_positive_and_scale_down_without_reaching_zero() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        Limit(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Limit(rate=1, burst=-1)
    assert Limit(rate=200, burst=400).scaled(0.5) == Limit(rate=100, burst=200)
    smallest = Limit(rate=1, burst=0).scaled(0.5)
    assert smallest == Limit(rate=0.5, burst=0)
    assert LocalLimiter().check("s", "k", smallest).allowed


def test_the_script_call_is_packed_as_redis_py_packs_it() -> None:
    connection = ConnectionPool.from_url(REDIS_URL).make_connection()
    keys = ["me:rl:orders:a", "me:rl:public:127.0.0.1", "me:rl:orders:ünïcode"]
    limits = [(100_000, 500_000, 1), (1_000, 1_001_000, 3), (100_000, 500_000, 1)]

    packed = _script_call(
        b"EVALSHA", b"f" * 40, keys, [_check_arguments(*limit) for limit in limits]
    )

    expected = connection.pack_command(
        "EVALSHA", "f" * 40, len(keys), *keys, *(value for limit in limits for value in limit)
    )
    assert packed == b"".join(expected)
