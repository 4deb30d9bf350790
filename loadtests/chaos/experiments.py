"""The experiments: a steady state, a fault under load, its rollback, and the verification.

Each experiment builds its own :class:`World`, states its steady-state hypothesis and checks it
before the fault (ready, mode normal, orders accepted), runs the load, injects its fault, always
rolls it back, waits for the engine to come back, and then verifies:

- nothing acknowledged is lost (Jepsen's set check over the whole history, see ``check``);
- no 5xx other than 503; answers within the request deadline (unless the engine was killed);
- how long it took to detect the fault and degrade, how fast the refusals were meanwhile, and how
  long it took to return to normal after the fault ended;
- the state equals a replay: with the engine stopped, ``matching-engine replay`` rebuilds the
  sequence, the trade count, the open orders and the fingerprint the engine served, and a
  restarted engine serves the same book and trades as before the stop.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loadtests.chaos.check import book_problems, check_history
from loadtests.chaos.client import Connection, NoAnswer
from loadtests.chaos.history import History, Op, percentile_ms
from loadtests.chaos.load import Attacker, Clock, Load, LoopLag, ModePoller, Sample, burst
from loadtests.chaos.state import capture, get_json
from loadtests.chaos.world import BASE_ENV, REQUEST_DEADLINE_S, SYMBOL, World
from loadtests.faultproxy import Mode

__all__ = ["EXPERIMENTS", "Experiment", "Result"]

PRE_S = 1.5  # steady load before the fault
STEADY_WAIT_S = 10.0  # how long the steady state may take to settle after that
TAIL_S = 1.0  # load after the engine is back
RECOVERY_TIMEOUT_S = 30.0
RATE = 100.0  # orders and cancels per second
CLIENT_TIMEOUT_S = REQUEST_DEADLINE_S + 2.0
# An answer may take the request deadline plus this before it counts as not failing fast.
SLACK_S = 1.0
RESUBMITS = 20  # in-doubt orders sent again to check idempotency
SETTLE_S = 1.0  # the sequence must stand still this long before the state is read
SETTLE_TIMEOUT_S = 20.0


class SteadyStateNotMet(Exception):
    pass


@dataclass
class Result:
    """The figures of one run; ``violations`` lists every must-hold figure that did not hold."""

    name: str
    fault: str
    hypothesis: str
    duration_s: float
    seed: int
    wall_s: float = 0.0
    requests: int = 0
    acked: int = 0
    acked_cancels: int = 0
    lost: int = 0
    mismatched: int = 0
    unexpected: int = 0
    refused_but_present: int = 0
    in_doubt: int = 0
    recovered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    non_503_5xx: int = 0
    no_answer: int = 0
    detect_s: float | None = None
    fast_fail_p99_ms: float | None = None
    fault_p99_ms: float | None = None  # every answer to a trader while the fault lasted
    slowest_answer_ms: float | None = None
    recovery_s: float | None = None
    replay_equal: bool | None = None
    replay: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # the experiment's own
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    artifacts: str | None = None  # kept when the run failed
    env: dict[str, str] = field(default_factory=dict)  # settings of its own, beyond the world's

    @property
    def passed(self) -> bool:
        return self.error is None and not self.violations

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        return "pass" if self.passed else "FAIL"

    def lines(self) -> list[str]:
        """The figures, for the terminal."""

        def show(value: float | None, unit: str, digits: int = 2) -> str:
            return "n/a" if value is None else f"{value:.{digits}f} {unit}"

        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        out = [
            f"requests {self.requests} ({statuses})",
            f"acknowledged orders {self.acked}, cancels {self.acked_cancels}; lost {self.lost}, "
            f"mismatched {self.mismatched}, unexpected {self.unexpected}, refused but present "
            f"{self.refused_but_present}; in doubt {self.in_doubt}, of which held {self.recovered}",
            f"5xx other than 503: {self.non_503_5xx}; no answer: {self.no_answer}; slowest "
            f"answer {show(self.slowest_answer_ms, 'ms', 0)}",
            f"detect {show(self.detect_s, 's')}; fast-fail p99 "
            f"{show(self.fast_fail_p99_ms, 'ms', 1)}; p99 during the fault "
            f"{show(self.fault_p99_ms, 'ms', 1)}; back to normal {show(self.recovery_s, 's')}",
            f"replay equal: {self.replay_equal} {self.replay}",
        ]
        out += [f"{name}: {value}" for name, value in self.figures.items()]
        out += [f"note: {note}" for note in self.notes]
        out += [f"VIOLATION: {violation}" for violation in self.violations]
        if self.error:
            out.append(f"ERROR: {self.error}")
        if self.artifacts:
            out.append(f"logs and history kept in {self.artifacts}")
        return out


class Experiment:
    name: ClassVar[str]
    fault: ClassVar[str]
    hypothesis: ClassVar[str]
    traders: ClassVar[int] = 8
    env: ClassVar[dict[str, str]] = {}
    # 503 codes that mean "the engine noticed and degraded on purpose".
    degraded_codes: ClassVar[frozenset[str]] = frozenset()
    # False where the engine is killed: requests in flight then get no answer, by design.
    expect_answers: ClassVar[bool] = True
    # Which answers must come within the request deadline (plus SLACK_S): all of them (1.0)
    # when a dependency fails, the 99th percentile when the engine itself is saturated.
    answer_quantile: ClassVar[float] = 1.0

    def __init__(
        self,
        duration_s: float,
        *,
        seed: int | None = None,
        keep: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.duration_s = duration_s
        self.keep = keep
        self.seed = random.randrange(2**32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self._log = log
        self.fault_start = 0.0
        self.fault_end = 0.0
        self.injected = False
        self.clock = Clock()
        self.history = History()

    def log(self, message: str) -> None:
        self._log(f"[{self.name} {self.clock():6.2f}s] {message}")

    # -- what each experiment says -----------------------------------------------------------

    async def inject_and_hold(self, result: Result) -> None:
        """Inject the fault, hold it, and roll it back in a ``finally``; set ``fault_start``
        and ``fault_end``."""
        raise NotImplementedError

    def degraded(self, sample: Sample) -> bool:
        """Whether a mode sample shows the degradation this fault should cause."""
        return False

    def judge(self, result: Result) -> list[str]:
        """Violations of the experiment's own must-hold figures."""
        return []

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> Result:
        started = time.monotonic()
        result = Result(self.name, self.fault, self.hypothesis, self.duration_s, self.seed)
        result.env = dict(self.env)
        self._log(f"\n=== {self.name}: {self.fault} (seed {self.seed}) ===")
        self._log(f"steady-state hypothesis: {self.hypothesis}")
        world: World | None = None
        try:
            with World(self.name, traders=self.traders, env=self.env) as world:
                self.world = world
                self._log(
                    f"world ready in {time.monotonic() - started:.1f} s: engine pid "
                    f"{world.server.pid} on {world.url}, data in {world.root}"
                )
                self.clock = Clock()
                try:
                    self._run_in(result)
                except BaseException:
                    world.keep = True
                    raise
                finally:
                    self.history.write(world.root / "history.jsonl")
                if self.keep or not result.passed:
                    world.keep = True
                    result.artifacts = str(world.root)
        except Exception:
            result.error = traceback.format_exc(limit=6).strip()
            if world is not None:
                result.artifacts = str(world.root)
        result.wall_s = time.monotonic() - started
        for line in result.lines():
            self._log(f"  {line}")
        self._log(f"=== {self.name}: {result.verdict} in {result.wall_s:.1f} s ===")
        return result

    def _run_in(self, result: Result) -> None:
        try:
            asyncio.run(self._drive(result))
        except SteadyStateNotMet as error:
            result.violations.append(f"steady state not met before the fault: {error}")
        self._figures(result)
        self._verify(result)
        result.violations += self._judge_common(result)
        if self.injected:
            result.violations += self.judge(result)

    async def _drive(self, result: Result) -> None:
        world = self.world
        longest = PRE_S + self.duration_s + RECOVERY_TIMEOUT_S + TAIL_S + 60
        self.poller = ModePoller(world.port, world.admin_key, self.clock)
        self.load = Load(
            world.port,
            world.traders,
            self.history,
            self.clock,
            rate=RATE,
            seed=self.seed,
            timeout_s=CLIENT_TIMEOUT_S,
            max_requests=int(RATE * longest),
        )
        stop = asyncio.Event()
        self.lag = LoopLag()
        tasks = [
            asyncio.create_task(self.poller.run(stop, longest)),
            asyncio.create_task(self.load.run(stop, longest)),
            asyncio.create_task(self.lag.run(stop, longest)),
        ]
        try:
            await asyncio.sleep(PRE_S)
            await self._await_steady_state()
            self.injected = True
            self.log("steady state holds; injecting the fault")
            await self.inject_and_hold(result)
            self.log("fault rolled back; waiting for the engine to return to normal")
            deadline = self.fault_end + RECOVERY_TIMEOUT_S
            while self.clock() < deadline and self.recovered_at() is None:
                await asyncio.sleep(0.2)
            await asyncio.sleep(TAIL_S)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    async def _await_steady_state(self) -> None:
        """Wait (a little) for the steady state: ready, the mode normal for the last second,
        and only accepted orders lately; raise :class:`SteadyStateNotMet` if it does not come."""
        deadline = self.clock() + STEADY_WAIT_S
        while (problem := await self._steady_state_problem()) is not None:
            if self.clock() > deadline:
                raise SteadyStateNotMet(problem)
            await asyncio.sleep(0.2)

    async def _steady_state_problem(self) -> str | None:
        connection = Connection(self.world.port)
        try:
            ready = await connection.request("GET", "/readyz", timeout_s=2.0)
        except NoAnswer as error:
            return f"/readyz did not answer: {error}"
        finally:
            connection.close()
        if ready.status != 200:
            return f"/readyz answered {ready.status}"
        now = self.clock()
        samples = [s for s in self.poller.samples if s.t >= now - 1.0]
        if len(samples) < 5 or not all(s.normal for s in samples):
            return f"the mode was not normal throughout the last second: {samples[-1:]}"
        ops = [
            op for op in self.history.of("order", "cancel") if op.done and op.finished >= now - 1.5
        ]
        if not any(op.kind == "order" and op.outcome == "ok" for op in ops):
            return "no order was accepted lately"
        # Cancels may meet orders that have traded meanwhile (404/409); nothing else may fail.
        bad = Counter(
            f"{op.kind} {op.status} {op.code}"
            for op in ops
            if op.outcome not in ("ok", "fail") or (op.kind == "order" and op.outcome == "fail")
        )
        if bad:
            return f"unexpected answers lately: {dict(bad)}"
        return None

    # -- figures ------------------------------------------------------------------------------

    def _ops_finished_after(self, t: float) -> list[Op]:
        """Trader operations that may have finished after ``t`` (ops are kept in start order)."""
        ops = self.history.ops
        first = bisect.bisect_left(ops, t - CLIENT_TIMEOUT_S - 1, key=lambda op: op.started)
        return [op for op in ops[first:] if op.kind in ("order", "cancel")]

    def detected_at(self) -> float | None:
        start = self.fault_start
        seen = [s.t for s in self.poller.samples if s.t >= start and self.degraded(s)][:1]
        seen += [
            op.finished
            for op in self._ops_finished_after(start)
            if op.finished >= start and op.status == 503 and op.code in self.degraded_codes
        ][:1]
        return min(seen, default=None)

    def recovered_at(self) -> float | None:
        """When the engine was back to normal after the fault: the mode poll normal from then on,
        and an order accepted after the last refusal or lost answer."""
        end = self.fault_end
        normal_since = None
        for sample in reversed(self.poller.samples):
            if sample.t < end or not sample.normal:
                break
            normal_since = sample.t
        if normal_since is None:
            return None
        ops = [op for op in self._ops_finished_after(end) if op.finished >= end]
        refused = [op.finished for op in ops if op.outcome in ("unavailable", "info", "error")]
        after = max([end, *refused])
        accepted = [
            op.finished
            for op in ops
            if op.kind == "order" and op.outcome == "ok" and op.started >= after
        ]
        if not accepted:
            return None
        return max(normal_since, min(accepted))

    def _figures(self, result: Result) -> None:
        ops = self.history.of("order", "cancel")
        result.requests = len(ops)
        statuses: Counter[str] = Counter()
        for op in ops:
            if op.status is None:
                statuses["no answer"] += 1
            elif op.code is not None and op.status >= 429:
                statuses[f"{op.status} {op.code}"] += 1
            else:
                statuses[str(op.status)] += 1
        result.statuses = dict(statuses)
        result.non_503_5xx = sum(
            1 for op in ops if op.status is not None and op.status >= 500 and op.status != 503
        )
        result.no_answer = sum(1 for op in ops if op.status is None)
        answered = [op.latency_s for op in ops if op.status is not None]
        result.slowest_answer_ms = max(answered) * 1000 if answered else None
        lag_p99, lag_max = percentile_ms(self.lag.lags, 0.99), max(self.lag.lags, default=0.0)
        result.figures["client loop lag p99 / max (ms)"] = (
            f"{lag_p99 or 0:.0f} / {lag_max * 1000:.0f}"
        )
        if lag_max > SLACK_S / 2:
            result.notes.append(
                f"the client itself was late by up to {lag_max * 1000:.0f} ms (CPU-starved "
                f"machine, load average {os.getloadavg()[0]:.1f}): its latencies include that"
            )
        if not self.injected:
            return
        detected = self.detected_at()
        recovered = self.recovered_at()
        result.detect_s = None if detected is None else detected - self.fault_start
        result.recovery_s = None if recovered is None else recovered - self.fault_end
        # Degraded: from the moment the engine was seen to degrade until it was normal again.
        degraded_from = self.fault_start if detected is None else detected
        degraded_until = recovered if recovered is not None else self.fault_end
        result.fast_fail_p99_ms = percentile_ms(
            (
                op.latency_s
                for op in ops
                if degraded_from <= op.started < degraded_until
                and op.status == 503
                and op.code in self.degraded_codes
            ),
            0.99,
        )
        result.fault_p99_ms = percentile_ms(
            (
                op.latency_s
                for op in ops
                if self.fault_start <= op.started < self.fault_end and op.status is not None
            ),
            0.99,
        )

    # -- verification -------------------------------------------------------------------------

    def _verify(self, result: Result) -> None:
        world = self.world
        asked: dict[str, list[str]] = {name: [] for name in world.traders}
        for op in self.history.of("order"):
            if op.client_order_id is not None:
                asked[op.actor].append(op.client_order_id)
        self.log("verifying: waiting for the engine to settle, then reading the state")
        asyncio.run(self._settle(result))
        before = asyncio.run(capture(world.port, world.traders, asked))
        check = check_history(self.history, before.orders)
        result.acked, result.acked_cancels = check.acknowledged, check.acknowledged_cancels
        result.lost, result.mismatched = len(check.lost), len(check.mismatched)
        result.unexpected = len(check.unexpected)
        result.refused_but_present = len(check.refused_but_present)
        result.in_doubt, result.recovered = check.in_doubt, check.recovered
        for kind, found in (
            ("lost", check.lost),
            ("mismatched", check.mismatched),
            ("unexpected", check.unexpected),
            ("refused but present", check.refused_but_present),
        ):
            result.notes += [f"{kind}: {item}" for item in found[:5]]
        result.violations += book_problems(
            [order for orders in before.orders.values() for order in orders], before.book
        )
        result.violations += asyncio.run(self._resubmit(result, before.orders))
        # Retries are sequenced (the core recognises them), so only the sequence may move.
        settled = asyncio.run(capture(world.port, world.traders))
        moved = settled.sequence - before.sequence
        result.figures["sequence moved by the retries"] = moved
        if (settled.book["bids"], settled.book["asks"], settled.trades) != (
            before.book["bids"],
            before.book["asks"],
            before.trades,
        ) or sorted(map(str, settled.open_orders)) != sorted(map(str, before.open_orders)):
            result.violations.append(
                "sending orders again changed the book, the trades or open orders"
            )
        before = settled

        self.log("state read and checked; stopping the engine for the replay")
        world.server.stop()
        summary = world.replay()
        self.log(f"replayed to sequence {summary['sequence']}; restarting the engine")
        world.server.start()
        after = asyncio.run(capture(world.port, world.traders))
        self.log("restarted engine read")
        served = {
            "sequence": (before.sequence, after.sequence),
            "trades": (before.trade_count, after.trade_count),
            "open_orders": (before.book_order_count, after.book_order_count),
            "fingerprint": (before.fingerprint(), after.fingerprint()),
        }
        problems = []
        result.replay = {name: summary[name] for name in served}
        result.replay["fingerprint"] = str(summary["fingerprint"])[:12]
        snapshot = summary.get("snapshot")
        if snapshot is not None:
            result.replay["snapshot_at"] = snapshot["sequence"]
        for name, (first, second) in served.items():
            if name == "fingerprint" and first is None:
                result.notes.append(
                    "too many open orders to read them all: fingerprint not compared"
                )
                continue
            if not summary[name] == first == second:
                problems.append(
                    f"{name}: replay {summary[name]}, served {first} before the stop, "
                    f"{second} after the restart"
                )
        if snapshot is not None and snapshot["matches_replay"] is False:
            problems.append(f"the snapshot at {snapshot['sequence']} disagrees with the replay")
        if after.book != before.book:
            problems.append("the restarted engine serves another book than before the stop")
        if after.trades != before.trades:
            problems.append("the restarted engine serves other trades than before the stop")
        result.replay_equal = not problems
        result.violations += problems

    async def _settle(self, result: Result) -> None:
        """Wait until the sequence stops moving: requests whose client gave up may still be
        waiting in the engine."""
        connection = Connection(self.world.port)
        try:
            last, since = -1, time.monotonic()
            deadline = since + SETTLE_TIMEOUT_S
            while time.monotonic() < deadline:
                sequence = (await get_json(connection, "/readyz"))["sequence"]
                if sequence != last:
                    last, since = sequence, time.monotonic()
                elif time.monotonic() - since >= SETTLE_S:
                    return
                await asyncio.sleep(0.1)
        finally:
            connection.close()
        result.notes.append(
            f"the sequence was still moving {SETTLE_TIMEOUT_S:.0f} s after the load"
        )

    async def _resubmit(self, result: Result, held: dict[str, list[dict[str, Any]]]) -> list[str]:
        """Send orders again with their client order ids, as a client whose request timed out
        would: in-doubt orders the engine holds, and a few acknowledged ones. Each must answer
        200 with the original order and change nothing."""
        by_id = {
            (actor, order["client_order_id"]): order
            for actor, orders in held.items()
            for order in orders
        }
        acked = [op for op in self.history.of("order") if op.outcome == "ok"]
        acked_ids = {op.client_order_id for op in acked}
        acked = [op for op in acked if (op.actor, op.client_order_id) in by_id]  # not lost
        in_doubt = [
            op
            for op in self.history.of("order")
            if op.in_doubt
            and op.client_order_id not in acked_ids
            and (op.actor, op.client_order_id) in by_id
        ]
        chosen = self.rng.sample(in_doubt, min(RESUBMITS, len(in_doubt)))
        chosen += self.rng.sample(acked, min(5, len(acked)))
        problems: list[str] = []
        connection = Connection(self.world.port)
        try:
            for op in chosen:
                original = by_id[(op.actor, op.client_order_id)]
                headers = {"Authorization": f"Bearer {self.world.traders[op.actor]}"}
                answer = await connection.request(
                    "POST", "/v1/orders", body=op.request, headers=headers, timeout_s=10.0
                )
                body = answer.json() if answer.status < 300 else None
                if (
                    answer.status != 200
                    or answer.headers.get("idempotent-replayed") != "true"
                    or body is None
                    or body["order_id"] != original["order_id"]
                ):
                    problems.append(
                        f"sending {op.client_order_id} again answered {answer.status} "
                        f"{answer.body[:200]!r}; the engine holds order {original['order_id']}"
                    )
        finally:
            connection.close()
        result.figures["orders sent again (in doubt + acknowledged)"] = (
            f"{len(chosen) - min(5, len(acked))} + {min(5, len(acked))}"
        )
        return problems

    def _judge_common(self, result: Result) -> list[str]:
        violations = []
        for name, count in (
            ("acknowledged orders lost", result.lost),
            ("acknowledged orders changed", result.mismatched),
            ("orders nobody asked for", result.unexpected),
            ("definitely refused orders that happened", result.refused_but_present),
            ("5xx answers other than 503", result.non_503_5xx),
        ):
            if count:
                violations.append(f"{name}: {count}")
        if self.injected and result.recovery_s is None:
            violations.append(
                f"not back to normal within {RECOVERY_TIMEOUT_S:.0f} s of the fault's end"
            )
        if self.expect_answers:
            every = self.answer_quantile == 1.0
            if every and result.no_answer:
                violations.append(f"requests without an answer: {result.no_answer}")
            limit_ms = (REQUEST_DEADLINE_S + SLACK_S) * 1000
            # A request never answered counts as slower than any answer.
            latencies = [
                op.latency_s if op.status else math.inf for op in self.history.of("order", "cancel")
            ]
            slowest = percentile_ms(latencies, self.answer_quantile)
            if slowest is not None and slowest > limit_ms:
                which = "an answer" if every else f"the p{self.answer_quantile * 100:g} answer"
                took = "none in time" if math.isinf(slowest) else f"{slowest:.0f} ms"
                violations.append(
                    f"{which} took {took}, more than the {REQUEST_DEADLINE_S:.0f} s request "
                    f"deadline (+{SLACK_S:.0f} s)"
                )
        return violations

    def _note_read_only(self, result: Result, what: str) -> None:
        """Note it when the database breaker opened though the database itself was healthy."""
        seen = [s.t for s in self.poller.samples if s.mode == "read_only"]
        if seen:
            result.notes.append(
                f"the engine went read_only during {what} ({seen[0] - self.fault_start:.2f} s "
                f"in, for {seen[-1] - seen[0] + 0.1:.1f} s) although the database was healthy: "
                "database calls that timed out under load opened the database breaker"
            )

    async def hold(self) -> None:
        """Keep the fault in place for the experiment's duration."""
        await asyncio.sleep(self.duration_s)


# -- the database -------------------------------------------------------------------------------


def _database_hypothesis(trouble: str) -> str:
    return (
        f"the engine is ready and normal and accepts orders; while PostgreSQL is {trouble} it "
        "turns read_only by itself within seconds and refuses writes with 503 read_only, every "
        "answer within the request deadline, never a 500 or a hang; once the database is back "
        "it returns to normal by itself, and no acknowledged order is lost"
    )


class _DatabaseFault(Experiment):
    degraded_codes = frozenset({"read_only"})
    proxy_mode: ClassVar[Mode]
    latency_s: ClassVar[float] = 0.0

    async def inject_and_hold(self, result: Result) -> None:
        proxy = self.world.db_proxy
        self.fault_start = self.clock()
        try:
            await asyncio.to_thread(proxy.set, self.proxy_mode, self.latency_s)
            self.log(f"database proxy set to {self.proxy_mode}")
            await self.hold()
        finally:
            await asyncio.to_thread(proxy.set, "pass")
            self.fault_end = self.clock()

    def degraded(self, sample: Sample) -> bool:
        return sample.mode == "read_only"

    def judge(self, result: Result) -> list[str]:
        if result.detect_s is None:
            return ["the engine never turned read_only"]
        return []


class DatabaseOutage(_DatabaseFault):
    name = "db-outage"
    fault = "PostgreSQL unreachable (proxy down: every connection reset)"
    hypothesis = _database_hypothesis("unreachable")
    proxy_mode = "down"


class DatabaseLatency(_DatabaseFault):
    name = "db-latency"
    fault = "PostgreSQL 10 s slow each way (proxy latency)"
    hypothesis = _database_hypothesis("ten seconds slow")
    proxy_mode = "latency"
    latency_s = 10.0


# -- Redis ----------------------------------------------------------------------------------------

_PROBE_PATH = f"/v1/book/{SYMBOL}?depth=1"
_PROBE_REQUESTS = 400


class _RedisFault(Experiment):
    hypothesis = (
        "the engine is ready and normal and accepts orders; while Redis fails, rate limiting falls "
        "back to the in-process limiter (rate_limiter local_fallback): orders go on being "
        "accepted, the mode stays normal, limits still apply, and it returns to Redis by itself"
    )

    def degraded(self, sample: Sample) -> bool:
        return sample.rate_limiter == "local_fallback"

    async def break_redis(self) -> None:
        raise NotImplementedError

    async def mend_redis(self) -> None:
        raise NotImplementedError

    async def _probe(self) -> dict[str, int]:
        statuses = await burst(
            self.world.port, _PROBE_PATH, requests=_PROBE_REQUESTS, concurrency=16
        )
        return {str(status): count for status, count in sorted(statuses.items(), key=str)}

    async def inject_and_hold(self, result: Result) -> None:
        result.figures["public-limit burst before the fault"] = await self._probe()
        self.fault_start = self.clock()
        try:
            await self.break_redis()
            while self.clock() < self.fault_start + min(self.duration_s, 5.0):
                if self.detected_at() is not None:
                    break
                await asyncio.sleep(0.1)
            result.figures["public-limit burst during the fault"] = await self._probe()
            await asyncio.sleep(max(0.0, self.fault_start + self.duration_s - self.clock()))
        finally:
            await self.mend_redis()
            self.fault_end = self.clock()

    def judge(self, result: Result) -> list[str]:
        violations = []
        if result.detect_s is None:
            violations.append("the rate limiter never fell back")
        during = [
            op for op in self.history.of("order") if self.fault_start <= op.started < self.fault_end
        ]
        accepted = sum(op.outcome == "ok" for op in during)
        refused = Counter(f"{op.status} {op.code}" for op in during if op.outcome != "ok")
        result.figures["orders during the fault"] = f"{accepted} accepted, refused {dict(refused)}"
        if not accepted:
            violations.append("no order was accepted while Redis failed")
        if any(op.status == 429 for op in during):
            violations.append("orders were rate limited while Redis failed")
        modes = {s.mode for s in self.poller.samples if s.status == 200}
        if modes != {"normal"}:
            violations.append(f"the mode changed while Redis failed: {sorted(map(str, modes))}")
        probe = result.figures.get("public-limit burst during the fault", {})
        if not probe.get("200") or not probe.get("429"):
            violations.append(
                f"the fallback limiter let all or nothing of a burst through: {probe}"
            )
        return violations


class RedisOutage(_RedisFault):
    name = "redis-outage"
    fault = "Redis stopped"

    async def break_redis(self) -> None:
        await asyncio.to_thread(self.world.redis.stop)
        self.log("redis stopped")

    async def mend_redis(self) -> None:
        if not self.world.redis.running:
            await asyncio.to_thread(self.world.redis.start)


class RedisErrors(_RedisFault):
    name = "redis-errors"
    fault = "Redis answers every write and script with an error (OOM)"

    async def break_redis(self) -> None:
        await asyncio.to_thread(self.world.redis.make_errors)
        self.log("redis answers OOM errors")

    async def mend_redis(self) -> None:
        await asyncio.to_thread(self.world.redis.clear_errors)


# -- the engine itself ----------------------------------------------------------------------------


class Crash(Experiment):
    name = "crash"
    fault = "kill -9 of the engine at random moments, then a restart"
    expect_answers = False
    hypothesis = (
        "the engine is ready and normal and accepts orders; after every kill -9 under load and "
        "restart it recovers, serves again, and holds exactly the acknowledged history"
    )

    def __init__(self, duration_s: float, *, kills: int = 3, **options: Any) -> None:
        super().__init__(duration_s, **options)
        self.kills = kills

    async def inject_and_hold(self, result: Result) -> None:
        server = self.world.server
        spacing = max(0.6, self.duration_s / self.kills)
        restarts: list[float] = []
        self.fault_start = self.clock()
        try:
            for number in range(1, self.kills + 1):
                await asyncio.sleep(self.rng.uniform(0.2, spacing))
                killed = self.clock()
                await asyncio.to_thread(server.kill)
                self.log(f"kill -9 number {number}")
                await asyncio.to_thread(server.start)
                restarts.append(self.clock() - killed)
                self.log(f"restarted and ready after {restarts[-1]:.2f} s")
        finally:
            self.fault_end = self.clock()
        result.figures["kills"] = len(restarts)
        result.figures["kill to ready (s)"] = [round(s, 2) for s in restarts]

    def judge(self, result: Result) -> list[str]:
        # Back to normal after a kill: the restart, until ready.
        result.recovery_s = max(result.figures.get("kill to ready (s)") or [0.0])
        if result.figures.get("kills") != self.kills:
            return [f"only {result.figures.get('kills')} of {self.kills} kills done"]
        return []


class Overload(Experiment):
    name = "overload"
    fault = "5x the measured capacity, open loop"
    traders = 16
    hypothesis = (
        "the engine is ready and normal and accepts orders; offered five times what it can "
        "take, it sheds the excess with fast 503 overloaded, keeps serving what it admits within "
        "the request deadline, never answers 500, and is normal again as soon as the load drops"
    )
    degraded_codes = frozenset({"overloaded"})
    # Limits sized to this machine rather than the defaults (512 requests in flight, 2,000
    # commands queued), which at a few hundred orders a second hold more work than the request
    # deadline allows: shedding should start well before the deadline is at risk.
    env: ClassVar[dict[str, str]] = {
        "ME_MAX_REQUESTS_IN_FLIGHT": "128",
        "ME_QUEUE_MAX_COMMANDS": "64",
    }
    answer_quantile = 0.99
    # Enough for the client to offer five times the capacity while admitted requests queue.
    connections = 1024
    factor = 5.0
    warmup_s = 2.0

    async def inject_and_hold(self, result: Result) -> None:
        load = self.load
        load.rate = 0
        ok, seconds = await load.closed_loop(concurrency=32, seconds=self.warmup_s)
        capacity = ok / seconds
        result.figures["capacity (orders/s)"] = round(capacity)
        load.max_requests += int(self.factor * capacity * (self.duration_s + 1))
        load.max_connections = self.connections
        sent_before, dropped_before = load.sent, load.dropped
        self.fault_start = self.clock()
        try:
            load.rate = self.factor * capacity
            self.log(f"capacity {capacity:.0f}/s; offering {load.rate:.0f}/s")
            await self.hold()
        finally:
            load.rate = RATE
            self.fault_end = self.clock()
        held = self.fault_end - self.fault_start
        result.figures["offered (requests/s)"] = round((load.sent - sent_before) / held)
        result.figures["not sent: client at its connection limit"] = load.dropped - dropped_before

    def judge(self, result: Result) -> list[str]:
        during = [
            op for op in self.history.of("order") if self.fault_start <= op.started < self.fault_end
        ]
        span = self.fault_end - self.fault_start
        goodput = sum(op.outcome == "ok" for op in during) / span if span else 0.0
        capacity = result.figures["capacity (orders/s)"]
        result.figures["goodput while overloaded (orders/s)"] = round(goodput)
        result.figures["shed (503 overloaded)"] = sum(op.code == "overloaded" for op in during)
        result.figures["client connections at most"] = self.connections
        if capacity and goodput < capacity / 2:
            result.notes.append(
                f"goodput fell to {goodput / capacity:.0%} of the capacity while shedding: each "
                "refusal costs the one event loop that also serves the admitted orders"
            )
        self._note_read_only(result, "the overload")
        if goodput <= 0:
            return ["nothing was accepted while overloaded"]
        return []


class BruteForce(Experiment):
    name = "brute-force"
    fault = "a flood of wrong API keys from one address"
    hypothesis = (
        "the engine is ready and normal and accepts orders; a flood of wrong keys from one "
        "address soon gets 429 at once instead of 401, while a trader with a valid key keeps "
        "trading with no 429 and a bounded p99"
    )
    concurrency = 8

    async def inject_and_hold(self, result: Result) -> None:
        self.attacker = Attacker(self.world.port, self.clock)
        stop = asyncio.Event()
        self.fault_start = self.clock()
        task = asyncio.create_task(
            self.attacker.run(
                stop,
                concurrency=self.concurrency,
                seconds=self.duration_s,
                max_requests=int(5000 * self.duration_s),
            )
        )
        try:
            await self.hold()
        finally:
            stop.set()
            await task
            self.fault_end = self.clock()
        # Back to normal: a wrong key is told 401 again, not 429.
        connection = Connection(self.world.port)
        self.unblocked_at: float | None = None
        try:
            while self.clock() < self.fault_end + RECOVERY_TIMEOUT_S:
                if await self.attacker.guess(connection) == 401:
                    self.unblocked_at = self.clock()
                    break
                await asyncio.sleep(0.5)
        finally:
            connection.close()

    def detected_at(self) -> float | None:
        attacker: Attacker | None = getattr(self, "attacker", None)
        return None if attacker is None else attacker.first.get(429)

    def recovered_at(self) -> float | None:
        recovered = super().recovered_at()
        unblocked: float | None = getattr(self, "unblocked_at", None)
        if recovered is None or unblocked is None:
            return None
        return max(recovered, unblocked)

    def judge(self, result: Result) -> list[str]:
        attacker = self.attacker
        statuses = attacker.statuses
        result.figures["wrong keys: 401 / 429 / other"] = (
            f"{statuses[401]} / {statuses[429]} / {sum(statuses.values()) - statuses[401] - statuses[429]}"
        )
        result.fast_fail_p99_ms = percentile_ms(attacker.latencies.get(429, []), 0.99)
        result.figures["wrong keys: p99 of 401 (ms)"] = _round(
            percentile_ms(attacker.latencies.get(401, []), 0.99)
        )
        before = [
            op.latency_s
            for op in self.history.of("order", "cancel")
            if op.status and op.finished < self.fault_start
        ]
        during = [
            op.latency_s
            for op in self.history.of("order", "cancel")
            if op.status and self.fault_start <= op.started < self.fault_end
        ]
        p99_before, p99_during = percentile_ms(before, 0.99), percentile_ms(during, 0.99)
        result.figures["trader p99 before / during the flood (ms)"] = (
            f"{_round(p99_before)} / {_round(p99_during)}"
        )
        violations = []
        trader_429 = sum(op.status == 429 for op in self.history.of("order", "cancel"))
        result.figures["trader 429s"] = trader_429
        if trader_429:
            violations.append(f"the trader got {trader_429} answers 429")
        if not statuses[429]:
            violations.append("the flood never got 429")
        burst = int(BASE_ENV.get("ME_RATE_LIMIT_AUTH_FAILURES_BURST", "10"))
        rate = float(BASE_ENV.get("ME_RATE_LIMIT_AUTH_FAILURES_PER_S", "1"))
        allowed = burst + 1 + rate * (self.fault_end - self.fault_start + 1)
        if statuses[401] > allowed:
            violations.append(f"{statuses[401]} wrong keys were looked up, more than {allowed:.0f}")
        refused = Counter(
            f"{op.status} {op.code}"
            for op in self.history.of("order")
            if self.fault_start <= op.started < self.fault_end and op.outcome != "ok"
        )
        result.figures["trader orders refused during the flood"] = dict(refused)
        self._note_read_only(result, "the flood")
        bound = max(1000.0, 10 * (p99_before or 0))
        if p99_during is not None and p99_during > bound:
            violations.append(f"the trader's p99 rose to {p99_during:.0f} ms (bound {bound:.0f})")
        return violations


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


EXPERIMENTS: dict[str, type[Experiment]] = {
    experiment.name: experiment
    for experiment in (
        DatabaseOutage,
        DatabaseLatency,
        RedisOutage,
        RedisErrors,
        Crash,
        Overload,
        BruteForce,
    )
}
