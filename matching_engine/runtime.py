"""Process-wide settings for running the engine: the garbage collector.

The book is millions of long-lived objects that form no garbage cycles (a dropped price level
lets go of its queue). CPython's collector still walks them: each young collection walks
everything allocated since the last one, each middle one everything that survived twenty young
ones, and now and then a full one the whole heap. Measured on the server at 2,500 orders a
second, a young collection of its 80,000 objects (the book's new orders and their commands)
stopped every request for 36 ms every 10 s, and at a million resting orders a full collection
stops it for a good part of a second.

So the server, once recovery has loaded the book, freezes what exists (a frozen object is never
walked again), and from then on :func:`keep_freezing` runs :func:`freeze_survivors` four times
a second: it collects the young generations, which frees the cyclic garbage among them, and
freezes what survived. Each object is walked about once, in a pause proportional to what the
last quarter second allocated and kept (about 3 ms at 5,000 orders a second), and the older
generations stay empty. The price: an object that survives a pass and later dies in a
reference cycle is never freed. The book forms none, and what the request path frees in cycles
is freed before it is a pass old: after half a minute of orders under load, with Redis down so that
every check failed and fell back, unfreezing and collecting everything found no such object.
The core benchmark runs with the same policy, so its figures are the server's.
"""

from __future__ import annotations

import asyncio
import gc

__all__ = ["FREEZE_INTERVAL_S", "GC_THRESHOLDS", "freeze_survivors", "keep_freezing"]

# Between passes, young collections still run as usual: a burst collects before the next pass.
GC_THRESHOLDS = (50_000, 20, 20)
FREEZE_INTERVAL_S = 0.25


def freeze_survivors() -> None:
    """Collect the young generations and freeze what survived, with what existed before."""
    gc.collect(1)
    gc.freeze()


def tune_garbage_collector() -> None:
    """Freeze the objects alive now and collect the young ones less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def keep_freezing(interval_s: float = FREEZE_INTERVAL_S) -> None:
    """Run :func:`freeze_survivors` every ``interval_s``, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        freeze_survivors()
