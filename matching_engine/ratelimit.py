"""Rate limiting with GCRA, in Redis when it is configured and healthy, in process otherwise.

Theory of operation
-------------------
GCRA (the generic cell rate algorithm, as in redis-cell's ``CL.THROTTLE``) keeps one number per
key: the theoretical arrival time (TAT) of the next request if requests came exactly at the
steady rate. A request of cost ``c`` moves the TAT ``c`` emission intervals forward, and is
allowed unless the new TAT lies more than the delay variation tolerance, ``burst + 1`` intervals,
ahead of now. So ``burst + 1`` requests pass at once, then one per interval; a refusal knows
exactly when the next request would pass (``retry_after_s``), and a key whose TAT is in the past
is the same as a key never seen, which is what lets both stores forget idle keys.

The Redis implementation is one Lua script, which decides a batch of checks atomically on the
server and by the server's own clock (``TIME``), so that concurrent gateways and clock skew cannot
let more through. The in-process one is the same arithmetic in the same integer microseconds, on
``time.monotonic``; the two give the same decisions on the same schedule of calls.

Redis is a dependency like the database: every call goes through a circuit breaker named
``redis`` under the socket timeout. On any Redis error, timeout or open breaker the request is
decided by the in-process limiter with the limits scaled down by ``rate_limit_fallback_factor``:
failing open to "no limit" would hand the engine to whoever floods it, failing closed would turn
a cache outage into a trading outage. Once the breaker's probe succeeds, Redis decides again.
Without a Redis URL (the embedded default) the in-process limiter enforces the full limits.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pybreaker
from prometheus_client import Counter, Gauge
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from matching_engine.breaker import Breaker
from matching_engine.metrics import labelled
from matching_engine.settings import Settings

__all__ = [
    "DECISIONS",
    "LIMITER_BACKEND",
    "Backend",
    "BackendState",
    "Decision",
    "Limit",
    "LocalLimiter",
    "RateLimiter",
    "RedisLimiter",
]

Backend = Literal["redis", "local"]
BackendState = Literal["redis", "local_fallback", "local"]
_BACKEND_STATES: tuple[BackendState, ...] = ("redis", "local_fallback", "local")

DECISIONS = Counter(
    "matching_engine_rate_limit_decisions_total",
    "Rate-limit decisions by scope, outcome (allowed or limited) and the backend that decided.",
    ["scope", "outcome", "backend"],
)
LIMITER_BACKEND = Gauge(
    "matching_engine_rate_limiter_backend",
    "What decides rate limits: 1 for the current backend (redis, local_fallback or local).",
    ["backend"],
)

_decisions = labelled(DECISIONS)
_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second, with ``burst`` more allowed at once on top of one."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 0:
            raise ValueError(f"a limit needs a positive rate and a burst >= 0, not {self}")

    def scaled(self, factor: float) -> Limit:
        """The limit with its rate and burst multiplied by ``factor`` (the burst rounded down)."""
        return Limit(rate=self.rate * factor, burst=math.floor(self.burst * factor))

    @property
    def interval_us(self) -> int:
        """The emission interval: microseconds between requests at the steady rate."""
        return max(1, round(_US_PER_S / self.rate))

    @property
    def tolerance_us(self) -> int:
        """The delay variation tolerance: how far ahead of now the TAT may run."""
        return self.interval_us * (self.burst + 1)


@dataclass(frozen=True, slots=True)
class Decision:
    """One check's answer. ``limit`` is the number of requests allowed at once (burst + 1),
    ``remaining`` how many more would be allowed right now, ``retry_after_s`` when a refused
    request would be allowed (0 when allowed; infinite when its cost exceeds the limit), and
    ``reset_after_s`` when the key is back to its full burst."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    reset_after_s: float
    backend: Backend


# One call checks a batch: KEYS[i] is a key's TAT, in microseconds of the server's clock, and
# ARGV[3i-2..3i] its emission interval (us), delay variation tolerance (us) and cost. Keys are
# checked in order, so a key twice in a batch sees its first check's TAT. Returns, flat, per key:
# allowed (0/1), remaining, retry_after_us (-1: never), reset_after_us. Every value is an integer
# number of microseconds, so Lua's doubles hold them exactly; the TAT is written with %.0f
# because tostring() would give 1.7e+15.
_GCRA_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local replies = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local tolerance = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local new_tat = tat + interval * cost
  local diff = now - (new_tat - tolerance)
  if diff < 0 then
    local retry_after = -1
    if interval * cost <= tolerance then
      retry_after = -diff
    end
    for _, value in ipairs({0, 0, retry_after, tat - now}) do
      replies[#replies + 1] = value
    end
  else
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
    for _, value in ipairs({1, math.floor(diff / interval), 0, new_tat - now}) do
      replies[#replies + 1] = value
    end
  end
end
return replies
"""


# The script call is written in RESP (the Redis protocol: an array of length-prefixed strings)
# here rather than by redis-py, whose generic packer encodes every argument in Python: 60 µs
# for a batch of 24 checks, against 9 µs this way, where a check's three arguments come from a
# cache (the same few limits recur in every batch).
def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


@functools.lru_cache(maxsize=256)
def _check_arguments(interval_us: int, tolerance_us: int, cost: int) -> bytes:
    """One check's three script arguments (ARGV), packed."""
    return b"".join(_bulk(b"%d" % value) for value in (interval_us, tolerance_us, cost))


def _script_call(command: bytes, script: bytes, keys: list[str], arguments: list[bytes]) -> bytes:
    """``EVALSHA sha`` or ``EVAL source``, on ``keys``, with ``arguments`` (one per key), packed."""
    count = 3 + 4 * len(keys)
    head = [b"*%d\r\n" % count, _bulk(command), _bulk(script), _bulk(b"%d" % len(keys))]
    return b"".join(head + [_bulk(key.encode()) for key in keys] + arguments)


def _gcra(
    tat: int | None, now: int, interval: int, tolerance: int, cost: int
) -> tuple[int, int, int, int, int]:
    """The Lua script's arithmetic: ``(allowed, remaining, retry_after_us, reset_after_us,
    new_tat)``, with ``new_tat`` the unchanged TAT when the request is refused."""
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval * cost
    diff = now - (new_tat - tolerance)
    if diff < 0:
        retry_after = -diff if interval * cost <= tolerance else -1
        return 0, 0, retry_after, tat - now, tat
    return 1, diff // interval, 0, new_tat - now, new_tat


def _decision(
    allowed: int, remaining: int, retry_us: int, reset_us: int, limit: Limit, backend: Backend
) -> Decision:
    return Decision(
        allowed=bool(allowed),
        limit=limit.burst + 1,
        remaining=remaining,
        retry_after_s=math.inf if retry_us < 0 else retry_us / _US_PER_S,
        reset_after_s=reset_us / _US_PER_S,
        backend=backend,
    )


# A check waiting for its batch's call: the Redis key, the limit, the cost, and its answer.
_Check = tuple[str, Limit, int, "asyncio.Future[list[int]]"]


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class LocalLimiter:
    """GCRA in process: one TAT per key, in microseconds of ``clock``.

    Memory is bounded: past ``max_keys`` keys, those whose TAT is in the past (the same as
    absent) are dropped, then the least recently used until half the bound remains, so that the
    sweep stays rare. Dropping a live key only forgives what it has used of its burst.
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], int] = _monotonic_us
    ) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._tat: dict[tuple[str, str], int] = {}  # least recently used first

    def __len__(self) -> int:
        return len(self._tat)

    def check(self, scope: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        now = self._clock()
        entry = (scope, key)
        allowed, remaining, retry_us, reset_us, tat = _gcra(
            self._tat.pop(entry, None), now, limit.interval_us, limit.tolerance_us, cost
        )
        if tat > now:
            self._tat[entry] = tat
            if len(self._tat) > self._max_keys:
                self._evict(now)
        return _decision(allowed, remaining, retry_us, reset_us, limit, "local")

    def _evict(self, now: int) -> None:
        self._tat = {entry: tat for entry, tat in self._tat.items() if tat > now}
        excess = len(self._tat) - self._max_keys // 2
        for entry in list(itertools.islice(self._tat, max(0, excess))):
            del self._tat[entry]


class RedisLimiter:
    """GCRA in Redis, every call through ``breaker``, the checks waiting at a moment in one call.

    One call at a time, on one connection: a check joins the batch that goes when the call in
    flight returns (or, when none is, at the end of the current pass of the event loop), and
    one script call (one round trip, one breaker call, one timeout) decides the whole batch. A
    round trip per check cost the gateway more CPU than anything else it does for an order; a
    second call in flight only makes more, smaller batches. If the call fails, every check of
    the batch fails and falls back, as one would alone, and so do the checks queued behind it.
    The keys of a batch need not share a cluster slot: this is for one Redis server (or a
    replicated primary), not a cluster.

    The calls go straight to a redis-py connection, not through a client and its pool, whose
    per-call machinery (pool checkout, retries, response callbacks) cost about half of each
    call's CPU here; the connection still does the protocol, connects again when needed, and
    disconnects when a call fails or is cut off, so that a late reply is never read as the next
    call's. redis-py's own retries are off: the breaker and the local fallback are the retry
    policy. The script is sent by its SHA1; a server that does not know it (new, restarted or
    flushed) gets the text once, by EVAL, which also caches it there.
    """

    KEY_PREFIX = "me:rl:"

    def __init__(self, url: str, *, breaker: Breaker, timeout_s: float) -> None:
        factory = ConnectionPool.from_url(  # only builds the connection the URL describes
            url,
            socket_connect_timeout=timeout_s,
            # No per-read or per-write timeout of redis-py's: the breaker's deadline bounds every
            # call already, and redis-py's own costs a task and a timer on each call.
            socket_timeout=None,
            retry=Retry(NoBackoff(), retries=0),
        )
        self._connection = factory.make_connection()  # type: ignore[no-untyped-call]
        self._sha = hashlib.sha1(_GCRA_LUA.encode()).hexdigest().encode()
        self._breaker = breaker
        self._batch: list[_Check] = []
        self._busy = False  # a call is in flight, or one is about to be sent
        self._closed = False
        self._sending: set[asyncio.Task[None]] = set()
        # The loop of the first check: asyncio.get_running_loop() makes a system call each time.
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(
        self, scope: str, key: str, limit: Limit, cost: int = 1
    ) -> asyncio.Future[list[int]]:
        """Queue a check for the next call. Its future gets the script's four values for it
        (allowed, remaining, retry_after_us, reset_after_us), or the call's error: a Redis
        error, a timeout, or :class:`BreakerOpen` when the breaker is open."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._batch.append((f"{self.KEY_PREFIX}{scope}:{key}", limit, cost, future))
        if not self._busy:
            self._busy = True
            # Not in this request's context: the call serves every request of the batch.
            loop.call_soon(self._send_batch, context=contextvars.Context())
        return future

    def _send_batch(self, _previous: asyncio.Task[None] | None = None) -> None:
        """Send what is waiting, if anything; called again when that call is over."""
        if _previous is not None:
            self._sending.discard(_previous)
        if not self._batch:
            self._busy = False
            return
        batch, self._batch = self._batch, []
        if self._closed:
            _fail(batch, RedisConnectionError("the rate limiter is closed"))
            self._busy = False
            return
        task = asyncio.create_task(self._decide(batch), context=contextvars.Context())
        self._sending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._send_batch)

    async def _decide(self, batch: list[_Check]) -> None:
        keys = [key for key, *_ in batch]
        # In a comprehension, so that no future is left in this frame (see the except clause).
        arguments = [
            _check_arguments(limit.interval_us, limit.tolerance_us, cost)
            for _, limit, cost, _ in batch
        ]
        try:
            async with self._breaker.guard():
                reply = await self._run_script(keys, arguments)
        except Exception as error:
            # What queued behind this call would go to the Redis that just failed: it falls
            # back now rather than after a second timeout.
            batch += self._batch
            self._batch = []
            _fail(batch, error)
            batch.clear()  # the error's traceback holds this frame: let go of the futures
            return
        except asyncio.CancelledError:  # shutting down: nobody is left waiting
            for *_, future in batch:
                future.cancel()
            raise
        values = [int(value) for value in reply]
        for index, (*_, future) in enumerate(batch):
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(values[4 * index : 4 * index + 4])

    async def _run_script(self, keys: list[str], arguments: list[bytes]) -> list[int]:
        """Run the script on ``keys``, with each key's :func:`_check_arguments`."""
        connection = self._connection
        try:
            await connection.send_packed_command(
                _script_call(b"EVALSHA", self._sha, keys, arguments)
            )
            reply: list[int] = await connection.read_response()
        except NoScriptError:
            await connection.send_packed_command(
                _script_call(b"EVAL", _GCRA_LUA.encode(), keys, arguments)
            )
            reply = await connection.read_response()
        return reply

    async def close(self) -> None:
        """Finish the call in flight; later checks fail (and fall back) without a call."""
        self._closed = True
        while self._sending:
            await asyncio.wait(set(self._sending))
        await self._connection.disconnect()


def _fail(batch: list[_Check], error: Exception) -> None:
    for *_, future in batch:
        if not future.done():
            future.set_exception(error)


class RateLimiter:
    """The gateway's limiter: Redis when configured and healthy, the local fallback otherwise."""

    def __init__(self, settings: Settings) -> None:
        self._fallback_factor = settings.rate_limit_fallback_factor
        self._local = LocalLimiter()
        self.breaker: Breaker | None = None
        self._redis: RedisLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # see RedisLimiter
        if settings.redis_url is not None:
            self.breaker = Breaker(
                "redis",
                fail_max=settings.redis_breaker_fail_max,
                reset_timeout_s=settings.redis_breaker_reset_s,
                timeout_s=settings.redis_socket_timeout_s,
                on_state_change=self._breaker_changed,
            )
            self._redis = RedisLimiter(
                settings.redis_url, breaker=self.breaker, timeout_s=settings.redis_socket_timeout_s
            )
        self._publish()

    @property
    def backend_state(self) -> BackendState:
        """``redis``; ``local_fallback`` while Redis is configured but its breaker is not closed;
        ``local`` when no Redis is configured."""
        if self.breaker is None:
            return "local"
        return "redis" if self.breaker.state == "closed" else "local_fallback"

    def decide(self, scope: str, key: str, limit: Limit, cost: int = 1) -> asyncio.Future[Decision]:
        """Count a request of ``cost`` against ``key``'s ``limit`` within ``scope``; the decision
        comes as a future, already done without Redis, and never fails: when Redis cannot
        decide, the local fallback does.

        A future, rather than a coroutine to await, so that a caller can go on preparing its
        request while Redis decides: the sequencer queues an order once its decision is in
        (:meth:`matching_engine.sequencer.Sequencer.submit`).

        ``scope`` names what is limited (orders, reads, public, auth failures): it is a metric
        label, so it must come from a small fixed set, never from the request.
        """
        if cost < 1:
            raise ValueError(f"a request costs at least 1, not {cost}")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        decided: asyncio.Future[Decision] = loop.create_future()
        if self._redis is None:
            decided.set_result(self._counted(scope, self._local.check(scope, key, limit, cost)))
        else:
            answer = self._redis.submit(scope, key, limit, cost)
            answer.add_done_callback(
                functools.partial(self._settle, decided, scope, key, limit, cost)
            )
        return decided

    async def check(self, scope: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        """:meth:`decide`, awaited."""
        return await self.decide(scope, key, limit, cost)

    def _settle(
        self,
        decided: asyncio.Future[Decision],
        scope: str,
        key: str,
        limit: Limit,
        cost: int,
        answer: asyncio.Future[list[int]],
    ) -> None:
        """Turn Redis's answer to one check into its decision, falling back when it failed."""
        if answer.cancelled():  # the limiter is closing: nobody is left waiting
            decided.cancel()
            return
        error = answer.exception()
        if error is None:
            allowed, remaining, retry_us, reset_us = answer.result()
            decision = _decision(allowed, remaining, retry_us, reset_us, limit, "redis")
        elif isinstance(error, (RedisError, OSError, pybreaker.CircuitBreakerError)):
            # The breaker counted the failure and reports its transitions; here a failure only
            # changes who decides.
            fallback = limit.scaled(self._fallback_factor)
            decision = self._local.check(scope, key, fallback, cost)
        else:  # a bug: its caller meets it
            if not decided.done():
                decided.set_exception(error)
            return
        self._counted(scope, decision)
        if not decided.done():  # its caller may have stopped waiting
            decided.set_result(decision)

    @staticmethod
    def _counted(scope: str, decision: Decision) -> Decision:
        _decisions(scope, "allowed" if decision.allowed else "limited", decision.backend).inc()
        return decision

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.close()

    def _breaker_changed(self, old: str, new: str) -> None:
        self._publish()

    def _publish(self) -> None:
        current = self.backend_state
        for each in _BACKEND_STATES:
            LIMITER_BACKEND.labels(each).set(1 if each == current else 0)
