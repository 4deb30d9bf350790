"""Throughput, latency and memory of the pure matching core, one process per measurement.

    python -m loadtests.bench_core [--commands 1000000] [--seed 7] [--resting 1000000]

The workload is seeded and realistic: several symbols, each with a mid price that wanders; limit
orders rest around the mid (most near it, so levels near the top grow hundreds of orders deep), a
third of the new orders cross the spread (gtc, ioc and market orders), and about a quarter of the
commands cancel a random resting order, which is usually in the middle of a deep level. The
commands are generated up front by driving a scratch engine, so that cancels target orders that
are really resting; the timed runs then replay that list into fresh engines.

Three measurements, each on a fresh engine, each in a fresh process that loads the list (so
that the commands and the engine lie in memory as a server's would, not among the generator's
garbage):
  1. throughput: the whole list in a tight loop, no per-command timing, with the server's
     collector pass (matching_engine.runtime) every 0.25 s, as the server runs it; when the core
     is compiled, the same again on a copy of the sources without the compiled extensions (the
     plain-Python baseline, same commands, same run);
  2. latency: the same list again, timing every command with perf_counter_ns
     (the ~50 ns the clock itself costs is included in the figures);
  3. memory: a separate process fills a book with ``--resting`` orders that do not cross and reports
     its resident memory (RSS) before and after.

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import loadtests
import matching_engine
from matching_engine.core import (
    COMPILED,
    CORE_BUILD,
    AddInstrument,
    CancelOrder,
    Command,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)
from matching_engine.core._compiled import copy_plain
from matching_engine.runtime import FREEZE_INTERVAL_S, GC_THRESHOLDS, Collector

ACCOUNTS = [f"acct-{i}" for i in range(200)]
START_MID = 100_000  # ticks (1000.00 with a 0.01 tick)
TARGET_RESTING_PER_SYMBOL = 5_000
# The collector pass runs every FREEZE_INTERVAL_S, as in the server; the clock is read after
# every run of this many commands (about a millisecond of work).
COMMANDS_PER_CLOCK_READ = 500
COLLECTOR = Collector()


def instruments(count: int) -> list[Instrument]:
    return [
        Instrument(
            symbol=f"SYM{i}-USD",
            tick_size=Decimal("0.01"),
            lot_size=Decimal("1"),
            min_quantity=Decimal("1"),
            max_quantity=Decimal("1000000"),
        )
        for i in range(count)
    ]


def generate(command_count: int, symbol_count: int, seed: int) -> list[Command]:
    """The seeded command list; a scratch engine tells which orders are resting."""
    rng = random.Random(seed)
    engine = MatchingEngine()
    symbols = [instrument.symbol for instrument in instruments(symbol_count)]
    commands: list[Command] = [AddInstrument(i) for i in instruments(symbol_count)]
    for command in commands:
        engine.submit(command)
    mids = dict.fromkeys(symbols, START_MID)
    resting: dict[str, list[tuple[int, str]]] = {s: [] for s in symbols}  # candidates to cancel
    buy, sell = Side.BUY, Side.SELL
    limit, market = OrderType.LIMIT, OrderType.MARKET
    gtc, ioc = TimeInForce.GTC, TimeInForce.IOC
    timestamp = 1_700_000_000_000_000_000
    while len(commands) < command_count:
        timestamp += 1_000
        symbol = rng.choice(symbols)
        if rng.random() < 0.02:
            mids[symbol] += rng.choice((-1, 1))
        mid = mids[symbol]
        candidates = resting[symbol]
        deep_enough = engine.open_order_count > TARGET_RESTING_PER_SYMBOL * symbol_count
        cancel_share = 0.5 if deep_enough else 0.1
        roll = rng.random()
        if roll < cancel_share and candidates:
            command: Command = _pick_cancel(rng, engine, candidates, timestamp)
            if command is None:
                continue
        else:
            side = buy if rng.random() < 0.5 else sell
            sign = 1 if side is buy else -1
            account = rng.choice(ACCOUNTS)
            crossing = rng.random() < 1 / 3
            if not crossing:
                offset = 1 + min(int(rng.expovariate(0.3)), 60)
                command = NewOrder(
                    account, symbol, side, limit, rng.randint(1, 100), mid - sign * offset,
                    timestamp=timestamp,
                )  # fmt: skip
            elif rng.random() < 0.1:
                command = NewOrder(
                    account, symbol, side, market, rng.randint(1, 60), timestamp=timestamp
                )
            else:
                command = NewOrder(
                    account, symbol, side, limit, rng.randint(1, 60),
                    mid + sign * rng.randint(1, 4),
                    time_in_force=ioc if rng.random() < 0.3 else gtc,
                    stp=SelfTradePrevention.CANCEL_OLDEST if rng.random() < 0.1
                    else SelfTradePrevention.CANCEL_NEWEST,
                    timestamp=timestamp,
                )  # fmt: skip
        events = engine.submit(command)
        first = events[0]
        if type(first) is OrderAccepted and isinstance(command, NewOrder):
            order = engine.order(first.order_id)
            if order is not None and order.remaining:
                candidates.append((first.order_id, command.account))
        commands.append(command)
    return commands


def _pick_cancel(
    rng: random.Random,
    engine: MatchingEngine,
    candidates: list[tuple[int, str]],
    timestamp: int,
) -> CancelOrder | None:
    for _ in range(8):
        if not candidates:
            return None
        index = rng.randrange(len(candidates))
        order_id, account = candidates[index]
        candidates[index] = candidates[-1]
        candidates.pop()
        order = engine.order(order_id)
        if order is not None and order.remaining:
            return CancelOrder(account, order_id, timestamp)
    return None


def passes(commands: list[Command]) -> Iterator[list[Command]]:
    """The commands in short runs; between two runs, the server's collector pass
    (:meth:`Collector.freeze_survivors`) once :data:`FREEZE_INTERVAL_S` went by since the last,
    outside any command's latency."""
    last = time.perf_counter()
    for start in range(0, len(commands), COMMANDS_PER_CLOCK_READ):
        yield commands[start : start + COMMANDS_PER_CLOCK_READ]
        if time.perf_counter() - last >= FREEZE_INTERVAL_S:
            COLLECTOR.freeze_survivors()
            last = time.perf_counter()


def run_throughput(commands: list[Command]) -> tuple[float, int, MatchingEngine]:
    engine = MatchingEngine()
    submit = engine.submit
    started = time.perf_counter()
    for run in passes(commands):
        for command in run:
            submit(command)
    elapsed = time.perf_counter() - started
    return elapsed, engine.trade_count, engine


def replay(commands: list[Command], *, latency: bool) -> dict[str, Any]:
    """The throughput run (and, with ``latency``, the latency run) of the list, as figures."""
    COLLECTOR.start()
    elapsed, trades, engine = run_throughput(commands)
    figures: dict[str, Any] = {
        "core": CORE_BUILD,
        "elapsed_s": elapsed,
        "trades": trades,
        "commands_per_s": round(len(commands) / elapsed),
    }
    if latency:
        figures["book"] = book_shape(engine)
        del engine
        latencies, figures["crossed"] = run_latency(commands)
        figures["latency_us"] = {
            name: round(percentile(latencies, fraction), 2)
            for name, fraction in (("p50", 0.50), ("p99", 0.99), ("p999", 0.999))
        }
        figures["latency_us"]["max"] = round(latencies[-1] / 1000, 1)
    return figures


def replay_in_child(pickled_commands: bytes, *, plain: bool = False) -> dict[str, Any]:
    """:func:`replay` in a fresh process, which loads the list from these bytes: the commands and
    the engine then lie in memory as a long-running server's would, not among the generator's
    garbage (which slows the compiled core by up to a quarter: memory stalls weigh more in
    faster code). ``plain`` runs a copy of the sources without the compiled extensions and
    measures throughput only; the other run imports what this process imports."""
    with tempfile.TemporaryDirectory(prefix="bench-core-") as directory:
        root = Path(directory)
        commands_file = root / "commands.pickle"
        commands_file.write_bytes(pickled_commands)
        tree = Path(loadtests.__file__).parent.parent
        if plain:
            for package in (matching_engine, loadtests):
                source = Path(package.__file__).parent  # type: ignore[arg-type]
                copy_plain(source, root / source.name)
            tree = root
        mode = "--plain-child" if plain else "--replay-child"
        out = subprocess.run(
            [sys.executable, "-m", "loadtests.bench_core", mode, str(commands_file)],
            cwd=tree,  # first on sys.path: the tree is what the child imports
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def run_latency(commands: list[Command]) -> tuple[list[int], int]:
    """Sorted per-command latencies (ns), and how many new orders traded on entry."""
    engine = MatchingEngine()
    submit = engine.submit
    clock = time.perf_counter_ns
    latencies = []
    crossed = 0
    for run in passes(commands):
        for command in run:
            started = clock()
            events = submit(command)
            latencies.append(clock() - started)
            if len(events) > 1 and type(events[1]) is Trade:
                crossed += 1
    latencies.sort()
    return latencies, crossed


def percentile(sorted_values: list[int], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))] / 1000


def book_shape(engine: MatchingEngine) -> tuple[int, int, int]:
    """(resting orders, levels, orders in the deepest level) at the end of the run."""
    levels = deepest = 0
    for instrument in engine.instruments():
        bids, asks = engine.depth(instrument.symbol, limit=10**9)
        levels += len(bids) + len(asks)
        deepest = max([deepest] + [level.order_count for level in bids + asks])
    return engine.open_order_count, levels, deepest


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def fill_resting(count: int) -> dict[str, float]:
    """Rest ``count`` non-crossing orders in a fresh engine; report resident memory."""
    gc.collect()
    before = rss_mb()
    engine = MatchingEngine()
    symbols = instruments(4)
    for instrument in symbols:
        engine.submit(AddInstrument(instrument))
    rng = random.Random(1)
    for index in range(count):
        side = Side.BUY if index % 2 else Side.SELL
        offset = 1 + rng.randrange(2_000)  # 2,000 levels a side per symbol
        price = START_MID - offset if side is Side.BUY else START_MID + offset
        engine.submit(
            NewOrder(
                ACCOUNTS[index % len(ACCOUNTS)],
                symbols[index % len(symbols)].symbol,
                side,
                OrderType.LIMIT,
                rng.randint(1, 100),
                price,
                timestamp=1_700_000_000_000_000_000 + index,
            )
        )
    assert engine.open_order_count == count
    after = rss_mb()
    return {"rss_before_mb": before, "rss_after_mb": after, "resting": count}


def measure_memory(count: int) -> dict[str, float]:
    """Run :func:`fill_resting` in a fresh process, so earlier phases do not blur the figure."""
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_core", "--memory-child", str(count)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resting", type=int, default=1_000_000, help="orders for memory test")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plain-child", help=argparse.SUPPRESS)
    parser.add_argument("--replay-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(fill_resting(args.memory_child)))
        return 0
    if args.plain_child is not None or args.replay_child is not None:
        assert args.plain_child is None or not COMPILED, "the plain baseline must be plain"
        with open(args.plain_child or args.replay_child, "rb") as file:
            commands = pickle.load(file)
        print(json.dumps(replay(commands, latency=args.replay_child is not None)))
        return 0

    started = time.perf_counter()
    generated = generate(args.commands, args.symbols, args.seed)
    generated_in = time.perf_counter() - started
    command_count = len(generated)
    counts = {"new": 0, "crossing": 0, "cancel": 0, "market": 0, "ioc": 0}
    for command in generated:
        if isinstance(command, CancelOrder):
            counts["cancel"] += 1
        elif isinstance(command, NewOrder):
            counts["new"] += 1
            counts["market"] += command.type is OrderType.MARKET
            counts["ioc"] += command.time_in_force is TimeInForce.IOC
    pickled_commands = pickle.dumps(generated, protocol=pickle.HIGHEST_PROTOCOL)
    del generated

    measured = replay_in_child(pickled_commands)
    assert measured["core"] == CORE_BUILD, "the replay ran another build of the core"
    plain_per_s = (
        replay_in_child(pickled_commands, plain=True)["commands_per_s"] if COMPILED else None
    )
    elapsed, trades = measured["elapsed_s"], measured["trades"]
    resting, levels, deepest = measured["book"]
    counts["crossing"] = measured["crossed"]
    latency_us = measured["latency_us"]
    memory = measure_memory(args.resting)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_million = (memory["rss_after_mb"] - memory["rss_before_mb"]) * 1e6 / memory["resting"]

    per_s = round(command_count / elapsed)
    figures = {
        "core": CORE_BUILD,
        "commands": command_count,
        "commands_per_s": per_s,
        "plain_commands_per_s": plain_per_s,
        "trades_per_s": round(trades / elapsed),
        "p50_us": latency_us["p50"],
        "p99_us": latency_us["p99"],
        "p999_us": latency_us["p999"],
        "max_us": latency_us["max"],
        "mb_per_million_resting": round(per_million, 1),
        "rss_with_resting_mb": round(memory["rss_after_mb"], 1),
        "peak_rss_mb": round(peak_mb, 1),
    }
    rows = [
        ("core", "compiled with mypyc" if COMPILED else "plain Python (MATCHING_ENGINE_PURE=1)"),
        ("workload", f"{command_count:,} commands, {args.symbols} symbols, seed {args.seed}"),
        ("  mix", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
        ("  end book", f"{resting:,} resting in {levels:,} levels, deepest {deepest:,}"),
        ("  generated in", f"{generated_in:.1f} s (not timed)"),
        (
            "  collector",
            f"thresholds {GC_THRESHOLDS}, survivors frozen every {FREEZE_INTERVAL_S} s, "
            "as the server runs",
        ),
        ("commands/s", f"{figures['commands_per_s']:,}"),
        (
            "  plain-Python core",
            "-"
            if plain_per_s is None
            else f"{plain_per_s:,} (same commands, same run; compiled is "
            f"{per_s / plain_per_s:.2f}x)",
        ),
        ("trades/s", f"{figures['trades_per_s']:,} ({trades:,} trades)"),
        ("latency p50", f"{figures['p50_us']} us"),
        ("latency p99", f"{figures['p99_us']} us"),
        ("latency p99.9", f"{figures['p999_us']} us"),
        ("latency max", f"{figures['max_us']} us"),
        (
            "memory",
            f"{memory['resting']:,} resting orders: RSS {memory['rss_after_mb']:.0f} MB "
            f"(+{per_million:.0f} MB per million)",
        ),
        ("peak RSS (this process)", f"{peak_mb:.0f} MB, command list included"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
