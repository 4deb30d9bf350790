"""The server's collector policy: what survives a pass is frozen, cyclic garbage not yet frozen is
freed, and what died in a cycle after it was frozen is freed by the next full collection."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from matching_engine.runtime import FULL_COLLECTION_MIN_INTERVAL_S, Collector


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen, as the rest of the suite expects."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(clock: Clock) -> Collector:
    collector = Collector(clock=clock)
    collector.start()
    return collector


def _frozen(obj: object) -> bool:
    """Out of every generation the collector walks (gc.get_objects skips the frozen)."""
    return not any(each is obj for each in gc.get_objects())


def _cycle() -> Node:
    first, second = Node(), Node()
    first.peer, second.peer = second, first
    return first


def _grow_frozen_by_a_third() -> list[list[None]]:
    return [[] for _ in range(gc.get_freeze_count() // 3)]


def test_survivors_are_frozen_and_the_generations_left_empty(collector: Collector) -> None:
    kept = _cycle()
    frozen_before = gc.get_freeze_count()
    collector.freeze_survivors()
    assert gc.get_freeze_count() >= frozen_before + 2
    assert _frozen(kept)
    assert _frozen(kept.peer)
    assert gc.get_count()[1:] == (0, 0)


def test_cyclic_garbage_is_collected_before_the_freeze(collector: Collector) -> None:
    garbage = _cycle()
    alive = weakref.ref(garbage)
    del garbage
    collector.freeze_survivors()
    assert alive() is None


def test_cyclic_garbage_in_the_oldest_generation_is_collected_too(collector: Collector) -> None:
    """A burst between passes moves young objects to the oldest generation."""
    garbage = _cycle()
    alive = weakref.ref(garbage)
    gc.collect(1)  # as automatic collections do: survivors move to the oldest generation
    del garbage
    collector.freeze_survivors()
    assert alive() is None


def test_a_cycle_that_died_frozen_waits_for_growth_and_the_interval(
    collector: Collector, clock: Clock
) -> None:
    leaked = _cycle()
    alive = weakref.ref(leaked)
    collector.freeze_survivors()  # frozen while alive
    del leaked
    clock.now += FULL_COLLECTION_MIN_INTERVAL_S
    collector.freeze_survivors()
    assert alive() is not None, "no growth yet: a pass does not walk what is frozen"

    clock.now -= 1  # less than the interval since the last full collection
    ballast = _grow_frozen_by_a_third()
    collector.freeze_survivors()
    assert alive() is not None, "grown, but the last full collection is too recent"

    clock.now += 1
    collector.freeze_survivors()
    assert alive() is None
    assert _frozen(ballast)


@pytest.mark.asyncio
async def test_a_wait_that_failed_after_a_pass_is_freed_by_the_full_collection(
    collector: Collector, clock: Clock
) -> None:
    """The cycle a dependency's failure makes: the future holds the exception, whose traceback
    holds the waiting frame, which holds the future. Frozen while waiting, it outlives the
    request until a full collection."""

    async def wait(future: asyncio.Future[None]) -> None:
        await future

    future = asyncio.get_running_loop().create_future()
    alive = weakref.ref(future)
    waiting = asyncio.create_task(wait(future))
    await asyncio.sleep(0)
    collector.freeze_survivors()  # the request is waiting through a pass
    future.set_exception(TimeoutError())
    with pytest.raises(TimeoutError):
        await waiting
    del future, waiting
    await asyncio.sleep(0)  # the loop's handle that woke this test holds the task until then
    collector.freeze_survivors()
    assert alive() is not None

    clock.now += FULL_COLLECTION_MIN_INTERVAL_S
    ballast = _grow_frozen_by_a_third()
    collector.freeze_survivors()
    assert alive() is None
    del ballast


def _pauses(kind: str) -> float:
    count = REGISTRY.get_sample_value("matching_engine_gc_pause_seconds_count", {"kind": kind})
    return count or 0.0


def test_every_pause_is_measured(collector: Collector, clock: Clock) -> None:
    passes, fulls = _pauses("pass"), _pauses("full")
    collector.freeze_survivors()
    assert (_pauses("pass"), _pauses("full")) == (passes + 1, fulls)

    clock.now += FULL_COLLECTION_MIN_INTERVAL_S
    ballast = _grow_frozen_by_a_third()
    collector.freeze_survivors()
    assert (_pauses("pass"), _pauses("full")) == (passes + 2, fulls + 1)
    del ballast


@pytest.mark.asyncio
async def test_run_makes_a_pass_every_interval(collector: Collector) -> None:
    kept = _cycle()
    task = asyncio.create_task(collector.run(interval_s=0.01))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if _frozen(kept):
                break
        assert _frozen(kept)
    finally:
        task.cancel()
