"""What a test needs to show that something is freed by reference counting, not left in a cycle
for the garbage collector (which the server runs rarely over most objects: matching_engine.runtime)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FailedFutures = Callable[[type[BaseException]], list["asyncio.Future[object]"]]


@contextmanager
def collector_off() -> Iterator[FailedFutures]:
    """Collect what is garbage now, then keep the collector from running inside the block.

    Yields a function that lists the futures failed with a given error that still exist (held
    by someone, or in a cycle), leaving out those that existed before the block: an earlier
    failed test's traceback may hold some.
    """
    gc.collect()
    before = _failed(BaseException)  # held, so that their ids stay theirs
    known = {id(each) for each in before}
    gc.disable()
    try:
        yield lambda error: [each for each in _failed(error) if id(each) not in known]
    finally:
        gc.enable()
        del before


def _failed(error: type[BaseException]) -> list[asyncio.Future[object]]:
    return [
        each
        for each in gc.get_objects()
        if isinstance(each, asyncio.Future)
        and each.done()
        and not each.cancelled()
        and isinstance(each.exception(), error)
    ]
