"""Offline check of a journal: rebuild the state from the first command, writing nothing.

Used by ``matching-engine replay``. It replays every journaled command into a fresh engine,
checks there is no gap in the sequence, and, when a snapshot exists, that restoring it gives the
same state as replaying up to it (the same fingerprint). A mismatch means a snapshot, or the
engine's determinism, cannot be trusted.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from matching_engine import codec
from matching_engine.core import CommandRejected, MatchingEngine
from matching_engine.db import create_engine
from matching_engine.journal import Journal
from matching_engine.settings import Settings

__all__ = ["replay_journal"]


async def replay_journal(settings: Settings) -> dict[str, Any]:
    database = create_engine(settings)
    try:
        journal = Journal(database)
        snapshot = await journal.latest_snapshot(at_most=await journal.last_sequence())
        snapshot_fingerprint = (
            None if snapshot is None else MatchingEngine.restore(snapshot[1]).fingerprint()
        )
        engine = MatchingEngine(closed_order_capacity=settings.closed_order_capacity)
        commands: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        snapshot_matches = None
        started = time.perf_counter()
        async for sequence, command in journal.replay(after=0):
            events = engine.submit(command)
            if engine.sequence != sequence:
                raise RuntimeError(f"journal gap: expected {engine.sequence}, found {sequence}")
            commands[codec.kind(command)] += 1
            if events and isinstance(events[0], CommandRejected):
                refused[events[0].code.value] += 1
            if snapshot is not None and sequence == snapshot[0]:
                snapshot_matches = engine.fingerprint() == snapshot_fingerprint
        seconds = time.perf_counter() - started
    finally:
        await database.dispose()
    return {
        "sequence": engine.sequence,
        "commands": dict(commands),
        "refused": dict(refused),
        "instruments": [instrument.symbol for instrument in engine.instruments()],
        "open_orders": engine.open_order_count,
        "trades": engine.trade_count,
        "fingerprint": engine.fingerprint(),
        "snapshot": None
        if snapshot is None
        else {"sequence": snapshot[0], "matches_replay": snapshot_matches},
        "seconds": round(seconds, 3),
    }
