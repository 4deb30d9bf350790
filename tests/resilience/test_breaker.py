"""The circuit breaker under asyncio: it opens on consecutive failures, fails fast while open,
lets one probe through when the reset timeout has passed, and counts only what the dependency
did: a timeout is a failure, a cancellation or an excluded error is nothing."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from prometheus_client import REGISTRY

from matching_engine.breaker import Breaker, BreakerOpen

pytestmark = pytest.mark.asyncio

RESET_S = 0.05


class DependencyDown(Exception):
    pass


class Rejected(Exception):
    """A business error: the dependency answered, and said no."""


def make_breaker(
    changes: list[tuple[str, str]] | None = None,
    *,
    fail_max: int = 3,
    exclude: tuple[type[BaseException], ...] = (),
) -> Breaker:
    return Breaker(
        f"test-{secrets.token_hex(4)}",
        fail_max=fail_max,
        reset_timeout_s=RESET_S,
        timeout_s=1.0,
        on_state_change=None if changes is None else lambda old, new: changes.append((old, new)),
        exclude=exclude,
    )


async def fail(breaker: Breaker, error: BaseException | None = None) -> None:
    with pytest.raises(type(error) if error else DependencyDown):
        async with breaker.guard():
            raise error or DependencyDown()


async def succeed(breaker: Breaker) -> None:
    async with breaker.guard():
        pass


async def open_breaker(breaker: Breaker) -> None:
    for _ in range(breaker.fail_max):
        await fail(breaker)
    assert breaker.state == "open"


def state_metric(breaker: Breaker, state: str) -> float | None:
    return REGISTRY.get_sample_value(
        "matching_engine_breaker_state", {"dependency": breaker.name, "state": state}
    )


async def test_opens_after_fail_max_consecutive_failures() -> None:
    breaker = make_breaker(fail_max=3)
    await fail(breaker)
    await fail(breaker)
    await succeed(breaker)  # a success resets the count: failures must be consecutive
    await fail(breaker)
    await fail(breaker)
    assert breaker.state == "closed"
    await fail(breaker)  # the call that trips it raises its own error
    assert breaker.state == "open"
    assert breaker.opened_at is not None
    assert 0 < breaker.retry_after_s <= RESET_S


async def test_open_fails_fast_without_running_the_body() -> None:
    breaker = make_breaker(fail_max=1)
    await fail(breaker)
    ran = 0
    attempts = 1_000
    started = time.perf_counter()
    for _ in range(attempts):
        with pytest.raises(BreakerOpen) as refused:
            async with breaker.guard():
                ran += 1
    per_call = (time.perf_counter() - started) / attempts
    assert ran == 0
    assert per_call < 0.0001  # a tenth of a millisecond, refusals included
    assert 0 < refused.value.retry_after_s <= RESET_S
    assert refused.value.dependency == breaker.name


async def test_a_timeout_inside_counts_as_a_failure() -> None:
    breaker = make_breaker(fail_max=2)
    for _ in range(2):
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            async with breaker.guard(timeout_s=0.02):
                await asyncio.sleep(10)
        assert time.perf_counter() - started < 0.5
    assert breaker.state == "open"


async def test_half_open_admits_one_probe_and_its_success_closes_the_breaker() -> None:
    changes: list[tuple[str, str]] = []
    breaker = make_breaker(changes)
    await open_breaker(breaker)
    await asyncio.sleep(RESET_S * 1.2)

    release = asyncio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        async with breaker.guard():
            probes += 1
            await release.wait()

    first = asyncio.create_task(probe())
    await asyncio.sleep(0)
    assert breaker.state == "half_open"
    others = await asyncio.gather(*(probe() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(refused, BreakerOpen) for refused in others)
    assert probes == 1

    release.set()
    await first
    assert breaker.state == "closed"
    await asyncio.gather(*(succeed(breaker) for _ in range(10)))
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_a_failed_probe_opens_the_breaker_again() -> None:
    changes: list[tuple[str, str]] = []
    breaker = make_breaker(changes)
    await open_breaker(breaker)
    await asyncio.sleep(RESET_S * 1.2)
    await fail(breaker)
    assert breaker.state == "open"
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]


async def test_cancellation_counts_as_neither_failure_nor_success() -> None:
    breaker = make_breaker(fail_max=2)
    started = asyncio.Event()

    async def abandoned() -> None:
        async with breaker.guard():
            started.set()
            await asyncio.sleep(10)

    async def cancel_one() -> None:
        started.clear()
        task = asyncio.create_task(abandoned())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # Not a failure: many cancellations leave the breaker closed.
    for _ in range(5):
        await cancel_one()
    assert breaker.state == "closed"

    # Not a success: it does not reset the count of consecutive failures.
    await fail(breaker)
    await cancel_one()
    await fail(breaker)
    assert breaker.state == "open"

    # Not a success for a probe either: the breaker stays half-open, and the next call probes.
    await asyncio.sleep(RESET_S * 1.2)
    await cancel_one()
    assert breaker.state == "half_open"
    await succeed(breaker)
    assert breaker.state == "closed"


async def test_a_cancellation_racing_the_deadline_stays_a_cancellation() -> None:
    breaker = make_breaker(fail_max=1)
    task = asyncio.current_task()
    assert task is not None

    async def cancelled_by_someone_else() -> None:
        async with breaker.guard(timeout_s=0):
            task.cancel()  # before the deadline's own
            await asyncio.sleep(10)

    with pytest.raises(asyncio.CancelledError):
        await cancelled_by_someone_else()
    task.uncancel()
    assert breaker.state == "closed"  # and not counted as a failure


async def test_a_call_that_fails_after_another_opened_the_breaker_raises_its_own_error() -> None:
    changes: list[tuple[str, str]] = []
    breaker = make_breaker(changes, fail_max=1)
    both_in = asyncio.Barrier(2)

    async def call() -> None:
        async with breaker.guard():
            await both_in.wait()
            raise DependencyDown()

    outcomes = await asyncio.gather(call(), call(), return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [DependencyDown, DependencyDown]
    assert breaker.state == "open"
    assert changes == [("closed", "open")]


async def test_excluded_errors_pass_through_and_do_not_count() -> None:
    breaker = make_breaker(fail_max=2, exclude=(Rejected,))
    for _ in range(5):
        await fail(breaker, Rejected())
    assert breaker.state == "closed"

    await fail(breaker)
    await fail(breaker, Rejected())  # not a success either: the count goes on
    await fail(breaker)
    assert breaker.state == "open"


async def test_call_runs_the_function_through_the_guard() -> None:
    breaker = make_breaker(fail_max=1)

    async def add(a: int, b: int) -> int:
        return a + b

    assert await breaker.call(add, 2, 3) == 5
    with pytest.raises(TimeoutError):
        await breaker.call(asyncio.sleep, 10, timeout_s=0.01)
    with pytest.raises(BreakerOpen):
        await breaker.call(add, 2, 3)


async def test_the_callback_sees_the_breaker_in_its_new_state() -> None:
    seen: list[tuple[str, str]] = []
    breaker = Breaker(
        f"test-{secrets.token_hex(4)}",
        fail_max=1,
        reset_timeout_s=RESET_S,
        timeout_s=1.0,
        on_state_change=lambda old, new: seen.append((new, breaker.state)),
    )
    await fail(breaker)
    await asyncio.sleep(RESET_S * 1.2)
    await succeed(breaker)
    assert seen == [("open", "open"), ("half_open", "half_open"), ("closed", "closed")]


async def test_a_failing_state_change_callback_does_not_break_the_breaker() -> None:
    def broken(old: str, new: str) -> None:
        raise RuntimeError("callback bug")

    breaker = Breaker(
        f"test-{secrets.token_hex(4)}",
        fail_max=1,
        reset_timeout_s=RESET_S,
        timeout_s=1.0,
        on_state_change=broken,
    )
    await fail(breaker)
    assert breaker.state == "open"


async def test_metrics_show_the_state_and_count_transitions() -> None:
    breaker = make_breaker(fail_max=1)
    assert [state_metric(breaker, s) for s in ("closed", "open", "half_open")] == [1, 0, 0]
    await fail(breaker)
    assert [state_metric(breaker, s) for s in ("closed", "open", "half_open")] == [0, 1, 0]
    await asyncio.sleep(RESET_S * 1.2)
    await succeed(breaker)
    assert [state_metric(breaker, s) for s in ("closed", "open", "half_open")] == [1, 0, 0]
    transitions = {
        state: REGISTRY.get_sample_value(
            "matching_engine_breaker_transitions_total",
            {"dependency": breaker.name, "to_state": state},
        )
        for state in ("open", "half_open", "closed")
    }
    assert transitions == {"open": 1, "half_open": 1, "closed": 1}
