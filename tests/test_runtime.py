"""The server's collector policy: young survivors are frozen, young cyclic garbage is freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from matching_engine.runtime import freeze_survivors, keep_freezing


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen, as the rest of the suite expects."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _frozen(obj: object) -> bool:
    """Out of every generation the collector walks (gc.get_objects skips the frozen)."""
    return not any(each is obj for each in gc.get_objects())


def _cycle() -> Node:
    first, second = Node(), Node()
    first.peer, second.peer = second, first
    return first


def test_survivors_are_frozen_and_the_generations_left_empty() -> None:
    kept = _cycle()
    frozen_before = gc.get_freeze_count()
    freeze_survivors()
    assert gc.get_freeze_count() >= frozen_before + 2
    assert _frozen(kept)
    assert _frozen(kept.peer)
    assert gc.get_count()[1:] == (0, 0)


def test_cyclic_garbage_is_collected_before_the_freeze() -> None:
    garbage = _cycle()
    alive = weakref.ref(garbage)
    del garbage
    freeze_survivors()
    assert alive() is None


@pytest.mark.asyncio
async def test_keep_freezing_runs_a_pass_every_interval() -> None:
    kept = _cycle()
    task = asyncio.create_task(keep_freezing(interval_s=0.01))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if _frozen(kept):
                break
        assert _frozen(kept)
    finally:
        task.cancel()
