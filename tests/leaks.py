"""What a test needs to show that something is freed by reference counting, not left in a cycle
for the garbage collector (which the server runs rarely over most objects: matching_engine.runtime)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_off() -> Iterator[None]:
    """Collect what is garbage now, then keep the collector from running inside the block."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def failed_futures(error: type[BaseException]) -> list[asyncio.Future[object]]:
    """Futures failed with ``error`` that still exist: held by someone, or in a cycle."""
    return [
        each
        for each in gc.get_objects()
        if isinstance(each, asyncio.Future)
        and each.done()
        and not each.cancelled()
        and isinstance(each.exception(), error)
    ]
