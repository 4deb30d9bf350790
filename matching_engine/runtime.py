"""Process-wide settings for running the engine: the garbage collector.

The book is millions of long-lived objects that form no garbage cycles (a dropped price level
lets go of its queue). CPython's collector still walks them: each young collection walks
everything allocated since the last one, each middle one everything that survived twenty young
ones, and now and then a full one the whole heap. Measured on the server at 2,500 orders a
second, a young collection of its 80,000 objects (the book's new orders and their commands)
stopped every request for 36 ms every 10 s, and at a million resting orders a full collection
stops it for a good part of a second.

So the server, once recovery has loaded the book, freezes what exists (a frozen object is never
walked again), and from then on :meth:`Collector.run` makes a pass four times a second: it
collects every generation, which hold only what is not frozen yet, so this frees the cyclic
garbage among them, and freezes what survived. Each object is walked about once, in a pause
proportional to what the last quarter second allocated and kept (about 3 ms at 5,000 orders a
second).

The price of freezing: an object frozen while alive that later dies in a reference cycle is not
freed by a pass. Such cycles do happen outside the book: a client connection's protocol
objects once it closes, or a request that waited through a pass for a future that then failed,
if the waiting frame still holds the future (the exception's traceback holds the frame, and the
future the exception; the journal's and the rate limiter's waits let go of theirs, and tests
check that they do). So a pass also thaws everything and collects it all, then freezes again,
once what passes froze since the last full collection is more than a quarter of what that one
left (CPython's own rule for its oldest generation, which bounds what is leaked until one runs)
and the last one is five minutes old. A full collection is the pause freezing avoids (420 ms
measured after a minute of orders at full rate, some 350,000), so it is kept rare; what a client
connection or a failed wait leaves is small and can wait that long. (What a pass freezes is
counted from the oldest generation, which holds only that pass's survivors:
:func:`gc.get_freeze_count` walks every frozen object, some 30 ms at 300,000.)
The core benchmark runs with the same policy, so its figures are the server's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from matching_engine.metrics import GC_PAUSE_SECONDS

__all__ = ["FREEZE_INTERVAL_S", "FULL_COLLECTION_MIN_INTERVAL_S", "GC_THRESHOLDS", "Collector"]

log = logging.getLogger(__name__)
_pass_seconds = GC_PAUSE_SECONDS.labels("pass")
_full_seconds = GC_PAUSE_SECONDS.labels("full")

# Between passes, collections still run as usual: a burst collects before the next pass.
GC_THRESHOLDS = (50_000, 20, 20)
FREEZE_INTERVAL_S = 0.25
FULL_COLLECTION_GROWTH = 0.25
FULL_COLLECTION_MIN_INTERVAL_S = 300.0


class Collector:
    """The collector policy of a long-running process whose heap is mostly the book."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._frozen_after_full = 0
        self._frozen_since_full = 0  # survivors of passes: like CPython's, it ignores deaths
        self._last_full = -float("inf")

    def start(self) -> None:
        """Collect everything, freeze what is alive now and collect the young ones less often."""
        self.collect_all()
        gc.set_threshold(*GC_THRESHOLDS)

    def collect_all(self) -> int:
        """Thaw, collect every generation and freeze again; the number of objects freed."""
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self._frozen_after_full = gc.get_freeze_count()
        seconds = time.perf_counter() - started
        _full_seconds.observe(seconds)
        self._frozen_since_full = 0
        self._last_full = self._clock()
        log.info(
            "full collection: %d objects freed, %d frozen, in %.1f ms",
            freed,
            self._frozen_after_full,
            seconds * 1000,
            extra={"event": "gc.full_collection", "freed": freed},
        )
        return freed

    def freeze_survivors(self) -> None:
        """Collect what is not frozen and freeze what survived, with what existed before;
        collect everything when enough was frozen since the last time, and that is long ago."""
        started = time.perf_counter()
        # All generations: a burst may have moved young objects to the oldest since the last
        # pass. Survivors stay in the oldest, which holds nothing else.
        gc.collect()
        self._frozen_since_full += len(gc.get_objects(generation=2))
        gc.freeze()
        _pass_seconds.observe(time.perf_counter() - started)
        if (
            self._frozen_since_full > self._frozen_after_full * FULL_COLLECTION_GROWTH
            and self._clock() - self._last_full >= FULL_COLLECTION_MIN_INTERVAL_S
        ):
            self.collect_all()

    async def run(self, interval_s: float = FREEZE_INTERVAL_S) -> None:
        """Run :meth:`freeze_survivors` every ``interval_s``, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.freeze_survivors()
