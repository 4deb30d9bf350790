"""Process-wide settings for running the engine: the garbage collector.

The book is millions of long-lived objects that form no garbage cycles (a dropped price level
lets go of its queue). CPython's default collector thresholds (700, 10, 10) still make it walk
young objects every few hundred allocations and, now and then, the whole heap: at a million
resting orders a full collection stalls every request for a good part of a second. So the
server, once recovery has loaded the book, freezes what exists (never walked again) and raises
the thresholds; the core benchmark runs with the same policy so its figures are the server's.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_garbage_collector"]

GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Freeze the objects alive now and collect the young ones less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
