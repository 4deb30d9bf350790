"""Time to ready after a restart: replaying the journal, with and without a snapshot.

    python -m loadtests.bench_recovery [--commands 1000000] [--database throwaway|machine]

The journal is filled directly, since this measures recovery and not the write path: the seeded
workload of :func:`loadtests.bench_core.generate` (limit orders around a wandering mid, a third
crossing, market and ioc orders, cancels of resting orders) is encoded with
:func:`matching_engine.codec.encode` and bulk-loaded with ``COPY`` into the ``journal`` table of a
freshly migrated PostgreSQL database (``--database throwaway``, the default: a cluster of our own;
``machine``: a database created on 127.0.0.1:5432 and dropped afterwards).

Then three restarts, each in a fresh process that runs ``EngineService.open`` (recovery, the
accounts, the audit trail, the sequencer) exactly as the server does at start-up, and reports:

1. **no snapshot, replay + projection**: the read models are empty (``projection_state`` absent),
   so recovery replays every command and also writes its read-model rows (orders, fills,
   trades): a rebuild, or a restart whose read models are far behind.
2. **no snapshot, replay only**: the read models now cover the journal (the first restart wrote
   them), so recovery replays every command and writes nothing: a restart with no usable snapshot.
   The engine this restart recovered is then snapshotted (``engine.snapshot()``) and stored
   with ``Journal.save_snapshot`` at the journal's end. (The first restart's engine is the same
   state; storing it there would have turned this run into a snapshot run.)
3. **snapshot + the commands after it**: ``--after-snapshot`` percent more commands (the same
   seeded workload, continued) are appended after the snapshot and ``projection_state`` is set
   to the last sequence, so recovery loads the snapshot and replays only those, projecting
   nothing. The snapshot's fetch and unpickling are also timed on their own, in one more fresh
   process.

"recover s" is recovery alone (what the server reports as ``matching_engine_recovery_seconds``);
"open s" is ``EngineService.open`` from call to return; "ready s" adds what the server's lifespan
does next before it serves, the collector policy of :mod:`matching_engine.runtime` (a full
collection, then freezing the heap); "process s" is the child process from spawn to its answer,
interpreter start, imports and shutdown included. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from loadtests.bench_core import generate
from loadtests.bench_http import database
from loadtests.server import cli
from matching_engine import codec
from matching_engine.core import Command, MatchingEngine
from matching_engine.db import create_engine
from matching_engine.journal import Journal
from matching_engine.runtime import Collector
from matching_engine.service import EngineService
from matching_engine.settings import Settings

__all__ = ["main"]

_COPY_CHUNK = 50_000


def _asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def journal_commands(url: str, commands: list[Command], first_sequence: int) -> float:
    """COPY ``commands`` into the journal from ``first_sequence`` on; answer the seconds taken."""
    connection = await asyncpg.connect(_asyncpg_url(url), timeout=10)
    started = time.perf_counter()
    try:
        for start in range(0, len(commands), _COPY_CHUNK):
            chunk = commands[start : start + _COPY_CHUNK]
            records = [
                (first_sequence + start + offset, codec.kind(command), codec.encode(command))
                for offset, command in enumerate(chunk)
            ]
            await connection.copy_records_to_table(
                "journal", records=records, columns=["sequence", "kind", "command"]
            )
        await connection.execute("ANALYZE journal")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def _set_projected(url: str, sequence: int) -> None:
    connection = await asyncpg.connect(_asyncpg_url(url), timeout=10)
    try:
        await connection.execute(
            "INSERT INTO projection_state (id, sequence) VALUES (1, $1) "
            "ON CONFLICT (id) DO UPDATE SET sequence = EXCLUDED.sequence",
            sequence,
        )
    finally:
        await connection.close()


async def _counts(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(_asyncpg_url(url), timeout=10)
    try:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("journal", "orders", "fills", "trades", "snapshots")
        }
    finally:
        await connection.close()


# -- the child: one restart -------------------------------------------------------------------


async def _restart(take_snapshot: bool) -> dict[str, Any]:
    """Start as the server's lifespan does (open, then the collector policy); time both."""
    settings = Settings()
    started = time.perf_counter()
    service = await EngineService.open(settings)
    opened = time.perf_counter() - started
    Collector().start()
    ready = time.perf_counter() - started
    report = service.recovery
    result: dict[str, Any] = {
        "open_s": opened,
        "ready_s": ready,
        "recover_s": report.seconds,
        "replayed": report.replayed,
        "snapshot_sequence": report.snapshot_sequence,
        "sequence": service.engine.sequence,
        "open_orders": service.engine.open_order_count,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    try:
        if take_snapshot:
            # As the server takes one: in a worker thread, then stored by the journal.
            engine = service.engine
            started = time.perf_counter()
            state = await asyncio.to_thread(engine.snapshot)
            result["snapshot_take_s"] = time.perf_counter() - started
            started = time.perf_counter()
            await Journal(service.database).save_snapshot(engine.sequence, state)
            result["snapshot_save_s"] = time.perf_counter() - started
            result["snapshot_bytes"] = len(state)
    finally:
        await service.close()
    return result


async def _load_snapshot() -> dict[str, Any]:
    """Fetch and unpickle the newest snapshot in a fresh process, as recovery does first."""
    database = create_engine(Settings())
    try:
        started = time.perf_counter()
        stored = await Journal(database).latest_snapshot(at_most=2**62)
        fetched = time.perf_counter() - started
    finally:
        await database.dispose()
    if stored is None:
        raise RuntimeError("no snapshot stored")
    started = time.perf_counter()
    MatchingEngine.restore(stored[1])
    restored = time.perf_counter() - started
    return {"snapshot_fetch_s": fetched, "snapshot_restore_s": restored, "bytes": len(stored[1])}


def restart(env: dict[str, str], *flags: str) -> dict[str, Any]:
    """Run one restart in a fresh process; its figures, with the process's own wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_recovery", "--child", *flags],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=3_600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"the restart failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_s"] = elapsed
    return figures


# -- the report -------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(
        f"{'restart':<34}{'replayed':>11}{'snapshot at':>13}{'recover s':>11}"
        f"{'commands/s':>12}{'open s':>9}{'ready s':>9}{'process s':>11}{'RSS MB':>8}"
    )
    for label, run in rows:
        # With a snapshot, recovery time is mostly loading it: see the snapshot line.
        rate = "-"
        if run["snapshot_sequence"] == 0 and run["recover_s"]:
            rate = f"{run['replayed'] / run['recover_s']:,.0f}"
        print(
            f"{label:<34}{run['replayed']:>11,}{run['snapshot_sequence']:>13,}"
            f"{run['recover_s']:>11.2f}{rate:>12}{run['open_s']:>9.2f}{run['ready_s']:>9.2f}"
            f"{run['process_s']:>11.2f}{run['rss_mb']:>8.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["throwaway", "machine"], default="throwaway")
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--after-snapshot", type=float, default=1.0, help="percent more commands after it"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--take-snapshot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load-snapshot", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.load_snapshot:
            figures = asyncio.run(_load_snapshot())
        else:
            figures = asyncio.run(_restart(args.take_snapshot))
        print(json.dumps(figures))
        return 0

    extra = max(1, round(args.commands * args.after_snapshot / 100))
    started = time.perf_counter()
    commands = generate(args.commands + extra, args.symbols, args.seed)
    generated_s = time.perf_counter() - started
    before, after = commands[: args.commands], commands[args.commands :]
    del commands

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-recovery-")))
        url, _ = stack.enter_context(database(args.database))
        env = {"ME_DATABASE_URL": url, "ME_DATA_DIR": str(workdir), "ME_LOG_LEVEL": "warning"}
        cli("migrate", env=env)
        load_s = asyncio.run(journal_commands(url, before, 1))
        del before
        gc.collect()

        cold = restart(env)
        projected = asyncio.run(_counts(url))
        warm = restart(env, "--take-snapshot")
        asyncio.run(journal_commands(url, after, args.commands + 1))
        last = args.commands + len(after)
        asyncio.run(_set_projected(url, last))
        snapshot = restart(env)
        load = restart(env, "--load-snapshot")

    if cold["sequence"] != args.commands or snapshot["sequence"] != last:
        raise RuntimeError(f"recovered to the wrong sequence: {cold} {snapshot}")
    rows = [
        ("no snapshot, replay + projection", cold),
        ("no snapshot, replay only", warm),
        (f"snapshot + {len(after):,} after it", snapshot),
    ]
    print(
        f"journal: {args.commands:,} commands ({args.symbols} symbols, seed {args.seed}; "
        f"generated in {generated_s:.1f} s, bulk-loaded in {load_s:.1f} s, not timed), "
        f"PostgreSQL {args.database}"
    )
    print(
        f"read models written by the first restart: {projected['orders']:,} orders, "
        f"{projected['fills']:,} fills, {projected['trades']:,} trades; "
        f"{cold['open_orders']:,} orders open at the end"
    )
    print_table(rows)
    size_mb = warm["snapshot_bytes"] / 2**20
    print(
        f"snapshot at {args.commands:,}: {size_mb:.1f} MB, pickled in {warm['snapshot_take_s']:.2f} s, "
        f"stored in {warm['snapshot_save_s']:.2f} s; in a fresh process fetched in "
        f"{load['snapshot_fetch_s']:.2f} s, unpickled in {load['snapshot_restore_s']:.2f} s"
    )
    projection_s = cold["recover_s"] - warm["recover_s"]
    figures = {
        "commands": args.commands,
        "replay_projection_s": round(cold["recover_s"], 3),
        "replay_projection_per_s": round(cold["replayed"] / cold["recover_s"]),
        "replay_only_s": round(warm["recover_s"], 3),
        "replay_only_per_s": round(warm["replayed"] / warm["recover_s"]),
        "projection_s": round(projection_s, 3),
        "snapshot_recover_s": round(snapshot["recover_s"], 3),
        "snapshot_open_s": round(snapshot["open_s"], 3),
        "snapshot_replayed": snapshot["replayed"],
        "snapshot_bytes": warm["snapshot_bytes"],
        "snapshot_load_s": round(load["snapshot_fetch_s"] + load["snapshot_restore_s"], 3),
        "snapshot_ready_s": round(snapshot["ready_s"], 3),
        "replay_only_ready_s": round(warm["ready_s"], 3),
        "open_orders": cold["open_orders"],
        "database": args.database,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
