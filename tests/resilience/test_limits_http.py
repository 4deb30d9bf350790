"""Rate limits through HTTP: per account for writes and for reads, per client address for the
public market data and for failed authentication, tighter while degraded, and enforced by the
in-process fallback while Redis is down or failing.

Each test serves an app of its own, with small limits, on this module's database (the engine
is left in normal mode, which a restart would bring back). With ``rate=1, burst=4`` exactly five
requests pass at once (GCRA: burst + 1), then one a second; the requests of a burst are sent
concurrently, so they all arrive well within one interval, even on a busy machine. Tests on the
machine's Redis use accounts of their own and delete their keys afterwards; tests that break
Redis break a throwaway ``redis-server`` of their own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from api.routes import orders
from loadtests.throwaway import ThrowawayRedis
from matching_engine.service import EngineService
from tests.api.conftest import Served
from tests.api.factories import Caller, assert_problem, create_admin, create_trader, order_body
from tests.api.factories import create_instrument as create_symbol
from tests.resilience import appharness
from tests.resilience.appharness import client_of, metric, put_mode, running, timed

pytestmark = pytest.mark.asyncio

module_pg_url = appharness.module_pg_url

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Five at once, then one a second; failed authentications: four at once, then one a second.
SMALL_LIMITS: dict[str, Any] = {
    "rate_limit_orders_per_s": 1,
    "rate_limit_orders_burst": 4,
    "rate_limit_reads_per_s": 1,
    "rate_limit_reads_burst": 4,
    "rate_limit_public_per_s": 1,
    "rate_limit_public_burst": 4,
    "rate_limit_auth_failures_per_s": 1,
    "rate_limit_auth_failures_burst": 3,
    "rate_limit_degraded_factor": 0.5,
    "rate_limit_fallback_factor": 0.5,
}
AT_ONCE = 5  # burst + 1
AT_ONCE_DEGRADED = 3  # rate and burst halved: burst floor(4 * 0.5) = 2, plus one
AT_ONCE_FALLBACK = 3
BURST = 12  # requests sent at once in a burst, well over every limit


@asynccontextmanager
async def serving(url: str, data_dir: Path, **settings: Any) -> AsyncIterator[Served]:
    """The app with these settings; it leaves the engine in normal mode for the next one."""
    async with running(url, data_dir, **settings) as served:
        try:
            yield served
        finally:
            if served.service.modes.manual.value != "normal":
                await served.service.set_mode(
                    actor="test", mode="normal", symbol=None, reason="test over"
                )


@pytest_asyncio.fixture
async def served(module_pg_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(module_pg_url, tmp_path, **SMALL_LIMITS) as served:
        yield served


@pytest.fixture
def service(served: Served) -> EngineService:
    return served.service


@pytest_asyncio.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(served) as client:
        yield client


@pytest_asyncio.fixture
async def symbol(service: EngineService) -> str:
    return await create_symbol(service)


Request = Callable[[], Awaitable[httpx.Response]]


async def burst(request: Request, count: int = BURST) -> list[tuple[httpx.Response, float]]:
    """``count`` copies of ``request`` sent at once: each response with its duration."""
    return list(await asyncio.gather(*(timed(request()) for _ in range(count))))


def statuses(answers: list[tuple[httpx.Response, float]]) -> list[int]:
    return sorted(response.status_code for response, _ in answers)


def place(client: httpx.AsyncClient, caller: Caller, symbol: str) -> Request:
    return lambda: client.post("/v1/orders", json=order_body(symbol), headers=caller.headers)


def list_orders(client: httpx.AsyncClient, caller: Caller) -> Request:
    return lambda: client.get("/v1/orders", headers=caller.headers)


def cancel_all(client: httpx.AsyncClient, caller: Caller) -> Request:
    return lambda: client.delete("/v1/orders", headers=caller.headers)


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    """A 429 ``rate_limited`` with when to retry and the state of the limit."""
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= 1


class TestOrderLimit:
    async def test_a_burst_over_the_limit_is_429_with_the_limit_headers(
        self, client: httpx.AsyncClient, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)

        answers = await burst(place(client, trader, symbol))

        assert statuses(answers) == [201] * AT_ONCE + [429] * (BURST - AT_ONCE)
        for response, _ in answers:
            if response.status_code == 429:
                assert_rate_limited(response, AT_ONCE)

    async def test_another_account_is_unaffected(
        self, client: httpx.AsyncClient, service: EngineService, symbol: str
    ) -> None:
        flooder, bystander = await create_trader(service), await create_trader(service)

        flood = await burst(place(client, flooder, symbol))
        others = await burst(place(client, bystander, symbol), AT_ONCE)

        assert 429 in statuses(flood)
        assert statuses(others) == [201] * AT_ONCE

    async def test_requests_pass_again_after_retry_after(
        self, client: httpx.AsyncClient, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)
        answers = await burst(place(client, trader, symbol))
        limited = next(response for response, _ in answers if response.status_code == 429)

        await asyncio.sleep(int(limited.headers["retry-after"]))

        assert (await place(client, trader, symbol)()).status_code == 201


class TestReadLimit:
    async def test_reads_are_limited_apart_from_writes(
        self, client: httpx.AsyncClient, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)
        assert 429 in statuses(await burst(place(client, trader, symbol)))

        reads = await burst(list_orders(client, trader))

        assert statuses(reads) == [200] * AT_ONCE + [429] * (BURST - AT_ONCE)
        for response, _ in reads:
            if response.status_code == 429:
                assert_rate_limited(response, AT_ONCE)

    async def test_writes_are_limited_apart_from_reads(
        self, client: httpx.AsyncClient, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)
        assert 429 in statuses(await burst(list_orders(client, trader)))

        writes = await burst(place(client, trader, symbol))

        assert statuses(writes) == [201] * AT_ONCE + [429] * (BURST - AT_ONCE)


class TestPublicLimit:
    async def test_market_data_is_limited_per_client_address(
        self, served: Served, symbol: str
    ) -> None:
        async with client_of(served, "10.0.0.1") as busy, client_of(served, "10.0.0.2") as calm:
            flood = await burst(lambda: busy.get(f"/v1/book/{symbol}"))
            elsewhere = await burst(lambda: calm.get(f"/v1/trades/{symbol}"), AT_ONCE)

        assert statuses(flood) == [200] * AT_ONCE + [429] * (BURST - AT_ONCE)
        for response, _ in flood:
            if response.status_code == 429:
                assert_rate_limited(response, AT_ONCE)
        assert statuses(elsewhere) == [200] * AT_ONCE

    async def test_a_limited_address_can_still_trade(
        self, served: Served, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)
        async with client_of(served, "10.0.0.3") as client:
            assert 429 in statuses(await burst(lambda: client.get("/v1/instruments")))

            response = await place(client, trader, symbol)()

        assert response.status_code == 201


class TestDegradedLimits:
    async def test_fewer_writes_pass_in_cancel_only(
        self, client: httpx.AsyncClient, service: EngineService
    ) -> None:
        admin = await create_admin(service)
        before, during = await create_trader(service), await create_trader(service)

        normal = statuses(await burst(cancel_all(client, before)))
        await put_mode(client, admin, "cancel_only")
        degraded = statuses(await burst(cancel_all(client, during)))

        assert normal.count(200) == AT_ONCE
        assert degraded.count(200) == AT_ONCE_DEGRADED
        assert set(degraded) == {200, 429}

    async def test_fewer_reads_pass_in_cancel_only(
        self, client: httpx.AsyncClient, service: EngineService
    ) -> None:
        admin = await create_admin(service)
        before, during = await create_trader(service), await create_trader(service)

        normal = statuses(await burst(list_orders(client, before)))
        await put_mode(client, admin, "cancel_only")
        degraded = statuses(await burst(list_orders(client, during)))

        assert normal.count(200) == AT_ONCE
        assert degraded.count(200) == AT_ONCE_DEGRADED


def wrong_key() -> str:
    """A well-formed key that no account has: checking it costs a database lookup."""
    return f"me_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


class TestBruteForce:
    ADDRESS = "10.6.6.6"

    async def test_wrong_keys_get_401_a_few_times_then_429(self, served: Served) -> None:
        async with client_of(served, self.ADDRESS) as client:
            answers = [
                await client.get("/v1/orders", headers={"Authorization": f"Bearer {wrong_key()}"})
                for _ in range(12)
            ]

        codes = [response.status_code for response in answers]
        failures = codes.index(429)
        burst_plus_one = SMALL_LIMITS["rate_limit_auth_failures_burst"] + 1
        assert 1 <= failures <= burst_plus_one
        assert codes == [401] * failures + [429] * (len(codes) - failures)
        for response in answers[:failures]:
            assert_problem(response, 401, "unauthenticated")
        for response in answers[failures:]:
            assert_problem(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1

    async def test_a_blocked_address_is_refused_before_any_lookup(
        self, served: Served, service: EngineService, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with client_of(served, self.ADDRESS) as client:
            await self.block(client)
            lookups: list[str] = []
            authenticate = service.authenticate

            async def counted(api_key: str) -> Any:
                lookups.append(api_key)
                return await authenticate(api_key)

            monkeypatch.setattr(service, "authenticate", counted)

            unknown, took = await timed(
                client.get("/v1/orders", headers={"Authorization": f"Bearer {wrong_key()}"})
            )
            anonymous = await client.get("/v1/orders")

        assert_problem(unknown, 429, "rate_limited")
        assert_problem(anonymous, 429, "rate_limited")
        assert lookups == []
        assert took < 0.1

    async def test_a_key_used_before_keeps_working_from_the_blocked_address(
        self, served: Served, service: EngineService, symbol: str
    ) -> None:
        trader = await create_trader(service)
        async with client_of(served, self.ADDRESS) as client:
            assert (await client.get("/v1/orders", headers=trader.headers)).status_code == 200
            await self.block(client)

            reads = await client.get("/v1/orders", headers=trader.headers)
            writes = await place(client, trader, symbol)()

        assert reads.status_code == 200
        assert writes.status_code == 201

    async def test_other_addresses_are_not_blocked(self, served: Served) -> None:
        async with client_of(served, self.ADDRESS) as blocked:
            await self.block(blocked)
        async with client_of(served, "10.6.6.7") as other:
            response = await other.get(
                "/v1/orders", headers={"Authorization": f"Bearer {wrong_key()}"}
            )

        assert_problem(response, 401, "unauthenticated")

    @staticmethod
    async def block(client: httpx.AsyncClient) -> None:
        """Send wrong keys until the address is refused."""
        for _ in range(20):
            bad = {"Authorization": f"Bearer {wrong_key()}"}
            if (await client.get("/v1/orders", headers=bad)).status_code == 429:
                return
        pytest.fail("20 wrong keys in a row were never refused with 429")


# -- Redis ----------------------------------------------------------------------------------------


async def limiter_state(client: httpx.AsyncClient, admin: Caller) -> str:
    response = await client.get("/v1/admin/mode", headers=admin.headers)
    assert response.status_code == 200, response.text
    state: str = response.json()["rate_limiter"]
    return state


def redis_decisions(exposition: str) -> dict[str, float]:
    """Order decisions that Redis made, by outcome, from a ``/metrics`` exposition."""
    return {
        outcome: metric(
            exposition,
            "matching_engine_rate_limit_decisions_total",
            {"scope": "orders", "outcome": outcome, "backend": "redis"},
        )
        or 0.0
        for outcome in ("allowed", "limited")
    }


class TestOnRedis:
    @pytest_asyncio.fixture
    async def cleanup(self) -> AsyncIterator[list[str]]:
        """Account ids whose limiter keys are deleted from the shared Redis afterwards."""
        accounts: list[str] = []
        yield accounts
        async with Redis.from_url(REDIS_URL) as redis:
            for account in accounts:
                await redis.delete(*(f"me:rl:{scope}:{account}" for scope in ("orders", "reads")))

    async def test_the_shared_redis_decides(
        self, module_pg_url: str, tmp_path: Path, cleanup: list[str]
    ) -> None:
        # A generous socket timeout: on a busy machine a slow answer would hand the decision to
        # the local fallback, which is not what this test is about.
        settings = {**SMALL_LIMITS, "redis_url": REDIS_URL, "redis_socket_timeout_s": 2.0}
        async with serving(module_pg_url, tmp_path, **settings) as app:
            admin, trader = await create_admin(app.service), await create_trader(app.service)
            cleanup.append(trader.account_id)
            symbol = await create_symbol(app.service)
            async with client_of(app) as client:
                before = redis_decisions((await client.get("/metrics")).text)
                answers = await burst(place(client, trader, symbol))
                after = redis_decisions((await client.get("/metrics")).text)
                state = await limiter_state(client, admin)
            async with Redis.from_url(REDIS_URL) as redis:
                stored = await redis.exists(f"me:rl:orders:{trader.account_id}")

        assert statuses(answers) == [201] * AT_ONCE + [429] * (BURST - AT_ONCE)
        assert after["allowed"] - before["allowed"] == AT_ONCE
        assert after["limited"] - before["limited"] == BURST - AT_ONCE
        assert state == "redis"
        assert stored == 1

    async def test_over_the_limit_an_order_refused_for_its_price_is_429_all_the_same(
        self,
        module_pg_url: str,
        tmp_path: Path,
        cleanup: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The fast path asks Redis and prepares the order at once; the limit still decides
        first, as on the route, which checks it before reading the order."""
        with_admission: list[bool] = []
        real_place = orders.place

        async def recording_place(*args: Any) -> Any:
            with_admission.append(len(args) == 4 and args[3] is not None)
            return await real_place(*args)

        monkeypatch.setattr(orders, "place", recording_place)
        settings = {**SMALL_LIMITS, "redis_url": REDIS_URL, "redis_socket_timeout_s": 2.0}
        async with serving(module_pg_url, tmp_path, **settings) as app:
            trader = await create_trader(app.service)
            cleanup.append(trader.account_id)
            symbol = await create_symbol(app.service)
            off_tick = lambda: client.post(  # noqa: E731
                "/v1/orders", json=order_body(symbol, price="100.005"), headers=trader.headers
            )
            async with client_of(app) as client:
                first = await place(client, trader, symbol)()  # the route; the key is known after
                answers = await burst(off_tick)

        assert first.status_code == 201
        assert statuses(answers) == [422] * (AT_ONCE - 1) + [429] * (BURST - AT_ONCE + 1)
        for response, _ in answers:
            if response.status_code == 422:
                assert_problem(response, 422, "invalid_tick")
            else:
                assert_rate_limited(response, AT_ONCE)
        assert with_admission[1:] == [True] * BURST  # the burst took the fast path


class TestRedisFailure:
    """The limits hold while Redis is down or failing: the in-process fallback decides, with
    the limits halved, and Redis decides again once its breaker lets a probe through."""

    @pytest.fixture
    def redis_server(self) -> Iterator[ThrowawayRedis]:
        with ThrowawayRedis() as server:
            yield server

    @pytest.mark.parametrize("fault", ["stopped", "errors"])
    async def test_the_fallback_limits_then_redis_again(
        self, module_pg_url: str, tmp_path: Path, redis_server: ThrowawayRedis, fault: str
    ) -> None:
        settings = {
            **SMALL_LIMITS,
            "redis_url": redis_server.url,
            "redis_breaker_reset_s": 1.0,
            "redis_breaker_fail_max": 3,
            "redis_socket_timeout_s": 0.1,
        }
        async with serving(module_pg_url, tmp_path, **settings) as app, client_of(app) as client:
            admin = await create_admin(app.service)
            warm, flooder, later = [await create_trader(app.service) for _ in range(3)]
            symbol = await create_symbol(app.service)
            assert (await place(client, warm, symbol)()).status_code == 201
            assert await limiter_state(client, admin) == "redis"

            if fault == "stopped":
                redis_server.stop()
            else:
                redis_server.make_errors()
            # Checks that arrive together share one Redis call, and the breaker counts calls:
            # one at a time, these open it.
            for _ in range(settings["redis_breaker_fail_max"]):
                await place(client, warm, symbol)()
            answers = await burst(place(client, flooder, symbol))
            during = await limiter_state(client, admin)

            if fault == "stopped":
                redis_server.start()
            else:
                redis_server.clear_errors()
            await asyncio.sleep(1.2)  # past redis_breaker_reset_s: the next check probes
            assert (await place(client, later, symbol)()).status_code == 201
            after = await limiter_state(client, admin)

        codes = statuses(answers)
        assert set(codes) == {201, 429}
        assert codes.count(201) == AT_ONCE_FALLBACK
        assert max(took for _, took in answers) < 0.3
        assert during == "local_fallback"
        assert after == "redis"
