"""The traffic of an experiment: traders' orders and cancels, the SRE's mode polling, an attacker.

Every loop here ends on its own: each has a request budget and a deadline besides the ``stop``
event, and every request has a client deadline, so a hung engine cannot hang the experiment.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loadtests.chaos.client import Connection, NoAnswer
from loadtests.chaos.history import History, Op
from loadtests.chaos.world import LOT_SIZE, SYMBOL, TICK_SIZE

__all__ = ["Attacker", "Clock", "Load", "LoopLag", "ModePoller", "Sample", "burst"]

_MID = Decimal(100)


class Clock:
    """Seconds since the experiment began, on the monotonic clock."""

    def __init__(self) -> None:
        self.zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.zero


class LoopLag:
    """How late the client's own event loop wakes up: when the machine is short of CPU, the
    client's latencies include this much of its own delay."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.lags: list[float] = []

    async def run(self, stop: asyncio.Event, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not stop.is_set() and loop.time() < end:
            due = loop.time() + self.every_s
            await asyncio.sleep(self.every_s)
            self.lags.append(max(0.0, loop.time() - due))


@dataclass
class Trader:
    name: str
    key: str
    number: int
    open_orders: dict[str, None] = field(default_factory=dict)  # acknowledged, maybe still open
    sent: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Load:
    """Orders and cancels from several traders, open loop at ``rate`` requests per second.

    Open loop: requests start on schedule whether or not earlier ones were answered, the way
    independent traders behave, so a slow engine meets a growing backlog instead of a politely
    waiting client. ``rate`` may change while it runs. Each request goes out on an idle
    connection, or a new one up to ``max_connections``; beyond that the request is not sent and
    counts as ``dropped``.
    """

    def __init__(
        self,
        port: int,
        traders: dict[str, str],
        history: History,
        clock: Clock,
        *,
        rate: float,
        seed: int,
        timeout_s: float,
        max_requests: int,
        max_connections: int = 256,
        cancel_share: float = 0.2,
    ) -> None:
        self.port = port
        self.traders = [Trader(name, key, n) for n, (name, key) in enumerate(traders.items())]
        self.history = history
        self.clock = clock
        self.rate = rate
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.max_connections = max_connections
        self.cancel_share = cancel_share
        self.dropped = 0
        self._rng = random.Random(seed)
        self._run_id = f"r{seed:x}{secrets.token_hex(3)}"
        self._idle: list[Connection] = []
        self._connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def sent(self) -> int:
        return sum(trader.sent for trader in self.traders)

    async def run(self, stop: asyncio.Event, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        next_at = loop.time()
        try:
            while not stop.is_set() and self.sent < self.max_requests:
                now = loop.time()
                if now >= end:
                    break
                if self.rate <= 0:
                    next_at = now
                    await asyncio.sleep(0.01)
                    continue
                if next_at > now:
                    await asyncio.sleep(min(next_at - now, 0.01))
                    continue
                # Behind schedule by more than a second (the client itself stalled): start
                # afresh rather than fire the whole backlog at once.
                next_at = max(next_at, now - 1.0) + 1.0 / self.rate
                connection = self._connection()
                if connection is None:
                    self.dropped += 1
                    continue
                task = asyncio.create_task(self._send_on(connection))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for connection in self._idle:
                connection.close()

    async def closed_loop(self, concurrency: int, seconds: float) -> tuple[int, float]:
        """``concurrency`` clients, each sending its next request on an answer, for ``seconds``;
        answers the number of 2xx and the time taken: the engine's capacity."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        end = started + seconds
        before = sum(1 for op in self.history if op.outcome == "ok")

        async def client() -> None:
            connection = Connection(self.port)
            try:
                while loop.time() < end and self.sent < self.max_requests:
                    await self._send(connection)
            finally:
                connection.close()

        await asyncio.gather(*(client() for _ in range(concurrency)))
        ok = sum(1 for op in self.history if op.outcome == "ok") - before
        return ok, loop.time() - started

    def _connection(self) -> Connection | None:
        if self._idle:
            return self._idle.pop()
        if self._connections >= self.max_connections:
            return None
        self._connections += 1
        return Connection(self.port)

    async def _send_on(self, connection: Connection) -> None:
        try:
            await self._send(connection)
        finally:
            self._idle.append(connection)

    def _next(self) -> tuple[Trader, Op]:
        rng = self._rng
        trader = rng.choice(self.traders)
        trader.sent += 1
        started = self.clock()
        if trader.open_orders and rng.random() < self.cancel_share:
            order_id = rng.choice(list(trader.open_orders))
            return trader, Op("cancel", trader.name, {"order_id": order_id}, started)
        side = rng.choice(("buy", "sell"))
        # Mostly near the middle, some through it: the book keeps trading and stays small.
        offset = rng.randint(-6, 3) * 5 * TICK_SIZE
        price = _MID + offset if side == "buy" else _MID - offset
        body = {
            "symbol": SYMBOL,
            "side": side,
            "type": "limit",
            "price": str(price),
            "quantity": str(rng.randint(1, 30) * LOT_SIZE),
            "time_in_force": "ioc" if rng.random() < 0.2 else "gtc",
            "client_order_id": f"{self._run_id}-{trader.number}-{trader.sent}",
        }
        return trader, Op("order", trader.name, body, started)

    async def _send(self, connection: Connection) -> None:
        trader, op = self._next()
        self.history.add(op)
        if op.kind == "cancel":
            method, path, body = "DELETE", f"/v1/orders/{op.request['order_id']}", None
        else:
            method, path, body = "POST", "/v1/orders", op.request
        await _perform(
            connection, op, method, path, body, trader.headers, self.timeout_s, self.clock
        )
        if op.kind == "cancel" and op.status in (200, 404, 409):
            trader.open_orders.pop(str(op.request["order_id"]), None)
        elif op.body is not None and op.body.get("status") in ("new", "partially_filled"):
            trader.open_orders[str(op.body["order_id"])] = None


async def _perform(
    connection: Connection,
    op: Op,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    timeout_s: float,
    clock: Clock,
) -> None:
    try:
        answer = await connection.request(
            method, path, body=body, headers=headers, timeout_s=timeout_s
        )
    except NoAnswer as error:
        op.finished = clock()
        op.error = str(error)
        return
    op.finished = clock()
    op.status = answer.status
    if 200 <= answer.status < 300:
        op.body = answer.json()
    else:
        op.code = answer.code


@dataclass(frozen=True, slots=True)
class Sample:
    """One answer of ``GET /v1/admin/mode`` (``status`` None: no answer)."""

    t: float
    status: int | None
    mode: str | None = None
    database: str | None = None
    rate_limiter: str | None = None

    @property
    def normal(self) -> bool:
        return (self.status, self.mode, self.database, self.rate_limiter) == (
            200,
            "normal",
            "closed",
            "redis",
        )


class ModePoller:
    """What an SRE's dashboard sees: ``GET /v1/admin/mode`` every ``every_s`` seconds."""

    def __init__(self, port: int, admin_key: str, clock: Clock, every_s: float = 0.1) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {admin_key}"}
        self.clock = clock
        self.every_s = every_s
        self.samples: list[Sample] = []

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    async def run(self, stop: asyncio.Event, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        connection = Connection(self.port)
        try:
            while not stop.is_set() and loop.time() < end:
                due = loop.time() + self.every_s
                try:
                    answer = await connection.request(
                        "GET", "/v1/admin/mode", headers=self.headers, timeout_s=1.0
                    )
                except NoAnswer:
                    self.samples.append(Sample(self.clock(), None))
                else:
                    state = answer.json() if answer.status == 200 else {}
                    self.samples.append(
                        Sample(
                            self.clock(),
                            answer.status,
                            state.get("mode"),
                            state.get("database"),
                            state.get("rate_limiter"),
                        )
                    )
                await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            connection.close()


@dataclass
class Attacker:
    """Guesses API keys from one address as fast as it can: well-formed keys that do not exist,
    each needing a lookup unless the engine has stopped listening to this address."""

    port: int
    clock: Clock
    statuses: Counter[int | None] = field(default_factory=Counter)
    latencies: dict[int, list[float]] = field(default_factory=dict)
    first: dict[int, float] = field(default_factory=dict)  # status -> first seen

    async def run(
        self, stop: asyncio.Event, *, concurrency: int, seconds: float, max_requests: int
    ) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        budget = [max_requests]

        async def guesser() -> None:
            connection = Connection(self.port)
            try:
                while not stop.is_set() and loop.time() < end and budget[0] > 0:
                    budget[0] -= 1
                    await self.guess(connection)
            finally:
                connection.close()

        await asyncio.gather(*(guesser() for _ in range(concurrency)))

    async def guess(self, connection: Connection) -> int | None:
        key = f"me_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        started = self.clock()
        try:
            answer = await connection.request(
                "GET",
                "/v1/orders?limit=1",
                headers={"Authorization": f"Bearer {key}"},
                timeout_s=5.0,
            )
        except NoAnswer:
            self.statuses[None] += 1
            return None
        finished = self.clock()
        self.statuses[answer.status] += 1
        self.latencies.setdefault(answer.status, []).append(finished - started)
        self.first.setdefault(answer.status, finished)
        return answer.status


async def burst(
    port: int, path: str, *, requests: int, concurrency: int, headers: dict[str, str] | None = None
) -> Counter[int | None]:
    """``requests`` GETs of ``path`` as fast as ``concurrency`` connections go: their statuses."""
    statuses: Counter[int | None] = Counter()
    budget = [requests]

    async def client() -> None:
        connection = Connection(port)
        try:
            while budget[0] > 0:
                budget[0] -= 1
                try:
                    answer = await connection.request("GET", path, headers=headers, timeout_s=5.0)
                    statuses[answer.status] += 1
                except NoAnswer:
                    statuses[None] += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses
