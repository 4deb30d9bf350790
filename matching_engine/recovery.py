"""Recovery at start-up: the newest usable snapshot, then the journal after it.

A snapshot is usable when the read models already cover it, because the events of the commands
before it cannot be produced again; the two newest snapshots are kept for that. Read-model rows
that a crash left unwritten are written on the way, in chunks. A chunk is written while the replay
goes on (the database works on it on its own core), one chunk at a time so that they land in
order, each with the progress marker that says how far the read models reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from matching_engine.core import MatchingEngine
from matching_engine.journal import Journal
from matching_engine.projection import Projection
from matching_engine.settings import Settings

__all__ = ["RecoveryReport", "recover"]

_REPLAY_FLUSH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot_sequence: int  # where replay started (0 without a snapshot)
    replayed: int  # journaled commands applied after it
    seconds: float
    last_timestamp: int  # of the newest journaled command: new ones must not be stamped earlier


async def recover(journal: Journal, settings: Settings) -> tuple[MatchingEngine, RecoveryReport]:
    """Rebuild the engine: the newest usable snapshot, then the journal after it.

    A snapshot is usable when the read models already cover it, because the events of the
    commands before it cannot be produced again; the two newest snapshots are kept for that.
    Read-model rows the crash left unwritten are written on the way.
    """
    started = time.perf_counter()
    projected = await journal.projected_sequence()
    snapshot = await journal.latest_snapshot(at_most=projected)
    if snapshot is None:
        engine = MatchingEngine(closed_order_capacity=settings.closed_order_capacity)
    else:
        engine = MatchingEngine.restore(snapshot[1])
    snapshot_sequence = engine.sequence
    projection = Projection(sequence=projected)
    replayed = 0
    writing: asyncio.Task[None] | None = None
    try:
        async for sequence, command in journal.replay(after=engine.sequence):
            events = engine.submit(command)
            if engine.sequence != sequence:
                raise RuntimeError(f"journal gap: expected {engine.sequence}, found {sequence}")
            replayed += 1
            if sequence > projected:
                projection.record(engine, sequence, events)
                if len(projection.orders) + len(projection.fills) >= _REPLAY_FLUSH_ROWS:
                    writing = await _write_behind(journal, projection, writing)
                    projection = Projection(sequence=sequence)
        if projection:
            writing = await _write_behind(journal, projection, writing)
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():  # the replay failed: stop the write
            writing.cancel()
            with contextlib.suppress(BaseException):
                await writing
    last_timestamp = await journal.last_timestamp()
    seconds = time.perf_counter() - started
    return engine, RecoveryReport(snapshot_sequence, replayed, seconds, last_timestamp)


async def _write_behind(
    journal: Journal, projection: Projection, previous: asyncio.Task[None] | None
) -> asyncio.Task[None]:
    """Start writing ``projection`` once the chunk before it is written (its error raises here)."""
    if previous is not None:
        await previous
    writing = asyncio.create_task(journal.write_projection(projection))
    await asyncio.sleep(0)  # the task sends its statement before the replay takes the CPU back
    return writing
