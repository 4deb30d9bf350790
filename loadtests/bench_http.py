"""Durable orders per second over HTTP, against the bare-FastAPI ceiling on the same machine.

    python -m loadtests.bench_http [--durations 10] [--connections 8,32,64,128]
                                   [--database throwaway|machine] [--redis throwaway|machine]

Two servers run side by side on 127.0.0.1, each one uvicorn worker with uvloop and httptools:

- the engine (``matching-engine serve``, whose httptools protocol sends each answer in one
  write: :mod:`api.http_protocol`) on PostgreSQL, with group commit and
  ``synchronous_commit=on``, and its rate limiter on Redis. The order limits are raised far above
  the benchmark's traffic (a million a second per account) so that nothing is refused, but every
  order is still checked against Redis: the run reports the limiter's decisions by backend from
  ``/metrics``. ``ME_LOG_LEVEL=warning`` silences uvicorn's access log;
- the ceiling (:mod:`loadtests.ceiling_app`): one FastAPI endpoint that parses a comparable order
  model and answers a comparable order body, and does nothing else.

``--database throwaway`` (the default) runs a PostgreSQL cluster of our own
(:class:`loadtests.throwaway.ThrowawayPostgres`), sized like the machine's and with its WAL files
already in place (:data:`BENCH_POSTGRES_SETTINGS`); ``machine`` creates a database on the machine's
server at 127.0.0.1:5432 and drops it afterwards. ``--redis throwaway`` (the default) runs a
``redis-server`` of our own; ``machine`` uses the machine's Redis at 127.0.0.1:6379. The limiter's
keys there are ``me:rl:<scope>:<account id>`` (``ME_REDIS_URL`` selects only the server and the
database number; the prefix is fixed), and the accounts are created for this run with random ids,
so its keys are its own; with these limits each key expires a few microseconds after its last
use.

wrk drives both (``loadtests/wrk/orders.lua``): authenticated order POSTs that rotate among
``--traders`` keys and 2,000 bodies, a third of which cross the spread, closed-loop at each
``--connections`` level for ``--durations`` seconds after a discarded warm-up, the ceiling and
the engine one after the other at each level. The engine's best level is its peak, and the
ceiling's best level is what it is compared with (``ratio``; ``ratio_same_level`` compares
the two at the engine's peak level). The levels reach 128 connections by default: the engine
commits the orders that wait together, so it needs more orders in flight than the ceiling to
reach its rate, and a venue's gateway holds many connections; the ceiling is at its best from
32 on. A last run offers half of the peak rate, paced by the script's ``delay()`` over as many
connections as the largest level, for the p99 at half the peak. wrk reports latency from the
moment a request is written; in a paced run a request that had to wait for a free connection
is counted as late.

Per level the table shows orders/s (2xx answers only), latency percentiles, answers >= 400 and
socket errors, the ratio to the ceiling at the same level, the journal's mean batch size (from
the ``matching_engine_journal_batch_commands`` histogram), and CPU: the server process's cores,
its CPU per request, the database's and Redis's cores (throwaway servers only), wrk's, and what
every other process on the machine used meanwhile. The machine may be shared: before each run the
benchmark waits (up to 20 s) for 2 quiet seconds, and a run during which other processes used
0.35 cores or more is marked noisy. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.server import ServerProcess, cli, create_account, free_port
from loadtests.throwaway import ThrowawayPostgres, ThrowawayRedis

__all__ = ["parse_wrk_output", "wrk_command"]

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "orders.lua"
MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/0"
SYMBOL = "BENCH-USD"
RESULT_PREFIX = "wrk-result "
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOISY_CORES = 0.35  # CPU used by processes not ours during a run


# -- wrk ------------------------------------------------------------------------------------------


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The JSON object of the ``wrk-result`` line that the Lua script's ``done()`` prints."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise ValueError(f"no {RESULT_PREFIX.strip()!r} line in wrk's output:\n{stdout}")


def wrk_command(
    url: str,
    requests_file: Path,
    *,
    connections: int,
    seconds: int,
    threads: int = 1,
    rate_per_s: float | None = None,
) -> list[str]:
    command = [
        "wrk",
        *("-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"),
        *("--timeout", "5s", "-s", str(WRK_SCRIPT), url, "--", str(requests_file)),
    ]
    if rate_per_s is not None:
        command += [f"{rate_per_s:.1f}", str(threads)]
    return command


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    connections: int,
    seconds: int,
    threads: int = 1,
    rate_per_s: float | None = None,
) -> dict[str, Any]:
    command = wrk_command(
        url,
        requests_file,
        connections=connections,
        seconds=seconds,
        threads=threads,
        rate_per_s=rate_per_s,
    )
    # wrk stops itself after -d; the timeout (which kills it) is only a guard.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return parse_wrk_output(result.stdout)


# -- CPU accounting -------------------------------------------------------------------------------


def _process_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and of its live descendants, in clock ticks."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(p) for p in (task / "children").read_text().split()]
    return total


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])


@dataclass
class CpuWindow:
    """CPU used by some processes, and by the machine, between ``start()`` and ``stop()``."""

    pids: dict[str, list[int]]
    cores: dict[str, float] = field(default_factory=dict)
    _start: dict[str, int] = field(default_factory=dict)
    _machine: int = 0
    _wall: float = 0.0

    _children: float = 0.0

    def start(self) -> None:
        self._start = {name: sum(map(_process_ticks, p)) for name, p in self.pids.items()}
        self._machine = _machine_ticks()[0]
        self._children = _reaped_children_seconds()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        """Cores used meanwhile: each named group, ``client`` (the children reaped meanwhile:
        wrk), ``machine`` (everything) and ``other`` (the machine less all of those)."""
        wall = time.perf_counter() - self._wall
        for name, pids in self.pids.items():
            used = sum(map(_process_ticks, pids)) - self._start[name]
            self.cores[name] = used / CLOCK_TICKS / wall
        self.cores["client"] = (_reaped_children_seconds() - self._children) / wall
        self.cores["machine"] = (_machine_ticks()[0] - self._machine) / CLOCK_TICKS / wall
        ours = sum(value for name, value in self.cores.items() if name != "machine")
        self.cores["other"] = max(0.0, self.cores["machine"] - ours)


def _reaped_children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(
    limit_cores: float = 0.3, window_s: float = 2.0, timeout_s: float = 20.0
) -> float:
    """Wait (at most ``timeout_s``) for ``window_s`` in which the machine, our servers idle, is
    busier than ``limit_cores`` by less; answer the last window's busy cores."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy, _ = _machine_ticks()
        time.sleep(window_s)
        cores = (_machine_ticks()[0] - busy) / CLOCK_TICKS / window_s
        if cores < limit_cores or time.monotonic() >= deadline:
            return cores


# -- the servers ----------------------------------------------------------------------------------


class CeilingProcess:
    """:mod:`loadtests.ceiling_app` under uvicorn with the engine's flags, ended by its PID."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout_s: float = 30.0) -> None:
        command = [
            sys.executable,
            *("-m", "uvicorn", "loadtests.ceiling_app:app"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            *("--log-level", "warning"),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the ceiling app exited; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/livez", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the ceiling app is not up after {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


# The throwaway PostgreSQL is set up like a server that has been running for a while, with the
# machine's buffer sizes (128 MB of shared buffers, hence 4 MB of WAL buffers). Its WAL files are
# written beforehand and recycled by a checkpoint, so that the run writes into files that exist: a
# fresh cluster creates each 16 MB segment when it needs one, filling it with zeros and syncing
# it, and the commit waiting behind that stalls for 20-50 ms every ~10,000 orders. Durability is
# the same: fsync, synchronous_commit and full_page_writes stay on.
BENCH_POSTGRES_SETTINGS = {"shared_buffers": "128MB", "min_wal_size": "1GB", "max_wal_size": "4GB"}
PREPARE_WAL = (
    # About 600 MB of WAL (~35 segments); a whole run writes ~1.7 kB a durable order.
    "CREATE TABLE wal_filler AS SELECT n, repeat('x', 200) AS filler"
    " FROM generate_series(1, 2000000) AS n",
    "DROP TABLE wal_filler",
    "CHECKPOINT",
)


@contextlib.contextmanager
def database(kind: str) -> Iterator[tuple[str, list[int]]]:
    """``(ME_DATABASE_URL, PIDs whose CPU is the database's)`` of an empty database."""
    if kind == "throwaway":
        with ThrowawayPostgres(settings=BENCH_POSTGRES_SETTINGS) as server:
            for statement in PREPARE_WAL:
                asyncio.run(_admin(server.admin_url, statement))
            yield server.url, [server.pid]
        return
    name = f"me_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(MACHINE_POSTGRES, f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", []
    finally:
        asyncio.run(_admin(MACHINE_POSTGRES, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def redis_server(kind: str) -> Iterator[tuple[str, list[int]]]:
    if kind == "throwaway":
        with ThrowawayRedis() as server:
            yield server.url, [server.pid]
        return
    yield MACHINE_REDIS, []


# -- the workload ---------------------------------------------------------------------------------


def order_bodies(count: int, seed: int = 1) -> list[str]:
    """Limit orders around a mid of 1000.00: a third cross the spread, the rest rest near it."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        side = rng.choice(["buy", "sell"])
        offset = rng.randint(1, 50) * (1 if rng.random() < 1 / 3 else -1)
        price = 1_000 + (offset if side == "buy" else -offset) / 100
        body = {"symbol": SYMBOL, "side": side, "type": "limit", "price": f"{price:.2f}",
                "quantity": f"{rng.randint(1, 500) / 1000:.3f}"}  # fmt: skip
        bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def write_requests(path: Path, keys: list[str], bodies: list[str]) -> None:
    lines = [f"{keys[index % len(keys)]}\t{body}" for index, body in enumerate(bodies)]
    path.write_text("\n".join(lines) + "\n")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    total = 0.0
    for (sample, sample_labels), value in after.items():
        if sample == name and all((k, v) in sample_labels for k, v in labels.items()):
            total += value - before.get((sample, sample_labels), 0.0)
    return total


@dataclass
class Run:
    server: str
    connections: int
    wrk: dict[str, Any]
    cpu: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    idle_cores: float = 0.0  # the machine's busy cores just before, with our servers idle

    @property
    def noisy(self) -> bool:
        return self.cpu.get("other", 0.0) >= NOISY_CORES

    @property
    def ok(self) -> int:
        return int(self.wrk["requests"]) - int(self.wrk["non_2xx"])

    @property
    def rate(self) -> float:
        return self.ok / float(self.wrk["duration_s"])

    @property
    def socket_errors(self) -> int:
        return sum(int(n) for n in self.wrk["socket_errors"].values())

    def latency(self, key: str) -> float:
        return float(self.wrk["latency_ms"][key])

    @property
    def server_us_per_request(self) -> float:
        requests = int(self.wrk["requests"])
        seconds = float(self.wrk["duration_s"])
        return self.cpu["server"] * seconds / requests * 1e6 if requests else float("nan")


def measure(
    server: str,
    url: str,
    requests_file: Path,
    connections: int,
    seconds: int,
    cpu_pids: dict[str, list[int]],
    rate_per_s: float | None = None,
) -> Run:
    window = CpuWindow(cpu_pids)
    idle = wait_for_quiet()
    before = scrape(url) if server == "engine" else {}
    window.start()
    result = run_wrk(
        f"{url}/v1/orders",
        requests_file,
        connections=connections,
        seconds=seconds,
        rate_per_s=rate_per_s,
    )
    window.stop()
    run = Run(server, connections, result, window.cores, idle_cores=idle)
    if server == "engine":
        after = scrape(url)
        batch_sum = _delta(before, after, "matching_engine_journal_batch_commands_sum")
        batch_count = _delta(before, after, "matching_engine_journal_batch_commands_count")
        commit = "matching_engine_journal_commit_seconds"
        run.metrics = {
            "mean_batch": batch_sum / batch_count if batch_count else float("nan"),
            "batches": batch_count,
            "commit_s": _delta(before, after, f"{commit}_sum"),
            "slow_commits": batch_count - _delta(before, after, f"{commit}_bucket", le="0.025"),
            **{
                f"http_{status}": _delta(
                    before,
                    after,
                    "matching_engine_http_requests_total",
                    route="/v1/orders",
                    method="POST",
                    status=status,
                )
                for status in ("2xx", "4xx", "5xx")
            },
            **{
                f"limiter_{backend}": _delta(
                    before,
                    after,
                    "matching_engine_rate_limit_decisions_total",
                    scope="orders",
                    backend=backend,
                )
                for backend in ("redis", "local")
            },
            "limited": _delta(
                before,
                after,
                "matching_engine_rate_limit_decisions_total",
                scope="orders",
                outcome="limited",
            ),
            **{
                f"gc_{kind}_{part}": _delta(
                    before, after, f"matching_engine_gc_pause_seconds_{part}", kind=kind
                )
                for kind in ("pass", "full")
                for part in ("count", "sum")
            },
        }
    return run


# -- the report -----------------------------------------------------------------------------------


def _cores(run: Run, name: str) -> str:
    value = run.cpu.get(name)
    return "-" if value is None else f"{value:.2f}"


def print_table(rows: list[tuple[str, Run, Run | None]]) -> None:
    """One line per run; ``ceiling`` is the ceiling's run at the same level, for the ratio."""
    print(
        f"{'run':<16}{'conns':>6}{'orders/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'p99.9':>8}"
        f"{'non2xx':>8}{'sockerr':>8}{'ratio':>7}{'batch':>7}{'commit':>7}{'slow':>5}"
        f"{'srv':>6}{'us/req':>8}"
        f"{'pg':>6}{'redis':>6}{'wrk':>6}{'other':>6}"
    )
    for label, run, ceiling in rows:
        ratio = f"{run.rate / ceiling.rate:.2f}" if ceiling is not None and ceiling.rate else "-"
        batch = run.metrics.get("mean_batch")
        commit_ms, slow = "-", "-"
        if run.metrics.get("batches"):
            commit_ms = f"{run.metrics['commit_s'] / run.metrics['batches'] * 1000:.2f}"
            slow = f"{run.metrics['slow_commits']:.0f}"
        name = f"{label}{' *' if run.noisy else ''}"
        print(
            f"{name:<16}{run.connections:>6}{run.rate:>10,.0f}{run.latency('p50'):>8.2f}"
            f"{run.latency('p99'):>8.2f}{run.latency('p99.9'):>8.2f}{run.wrk['non_2xx']:>8}"
            f"{run.socket_errors:>8}{ratio:>7}"
            f"{'-' if batch is None else f'{batch:.1f}':>7}{commit_ms:>7}{slow:>5}"
            f"{_cores(run, 'server'):>6}"
            f"{run.server_us_per_request:>8.0f}{_cores(run, 'postgres'):>6}"
            f"{_cores(run, 'redis'):>6}{_cores(run, 'client'):>6}{_cores(run, 'other'):>6}"
        )
    print(
        "orders/s: 2xx answers a second; non2xx: answers >= 400; ratio: to the ceiling at the "
        "same level;\nbatch: journal commands per commit; commit: mean ms per journal commit; "
        "slow: commits over 25 ms;\nsrv/pg/redis/wrk/other: cores used by the server, PostgreSQL, "
        "Redis (throwaway ones only; a machine server counts in "
        "'other'), wrk, and everything else;\nus/req: server CPU per request. "
        f"* : other processes used >= {NOISY_CORES} cores during the run (noisy)."
    )


def _parse_levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("connections: a comma-separated list of positive counts")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--durations", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=_parse_levels, default=[8, 32, 64, 128])
    parser.add_argument("--database", choices=["throwaway", "machine"], default="throwaway")
    parser.add_argument("--redis", choices=["throwaway", "machine"], default="throwaway")
    parser.add_argument("--traders", type=int, default=16, help="trader keys to rotate")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_http needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        database_url, postgres_pids = stack.enter_context(database(args.database))
        redis_url, redis_pids = stack.enter_context(redis_server(args.redis))
        env = {
            "ME_DATABASE_URL": database_url,
            "ME_REDIS_URL": redis_url,
            "ME_DATA_DIR": str(workdir / "data"),
            "ME_LOG_LEVEL": "warning",
            "ME_RATE_LIMIT_ORDERS_PER_S": "1000000",
            "ME_RATE_LIMIT_ORDERS_BURST": "1000000",
            "ME_RATE_LIMIT_READS_PER_S": "1000000",
            "ME_RATE_LIMIT_READS_BURST": "1000000",
        }
        cli("migrate", env=env)
        _, admin_key = create_account("bench-admin", "admin", env)
        keys = [create_account(f"bench-{i}", "trader", env)[1] for i in range(args.traders)]
        requests_file = workdir / "requests.tsv"
        write_requests(requests_file, keys, order_bodies(2_000))

        engine = stack.enter_context(ServerProcess(env, workdir / "engine.log"))
        engine.start()
        instrument = {"symbol": SYMBOL, "tick_size": "0.01", "lot_size": "0.001",
                      "min_quantity": "0.001", "max_quantity": "1000"}  # fmt: skip
        httpx.post(
            f"{engine.url}/v1/admin/instruments",
            json=instrument,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=10,
        ).raise_for_status()
        ceiling = CeilingProcess(workdir / "ceiling.log")
        stack.callback(ceiling.stop)
        ceiling.start()

        engine_pids = {"server": [engine.pid]}
        if postgres_pids:
            engine_pids["postgres"] = postgres_pids
        if redis_pids:
            engine_pids["redis"] = redis_pids
        ceiling_pids = {"server": [ceiling.pid]}
        top = max(args.connections)
        for url in (ceiling.url, engine.url):  # warm-up: imports, caches, known keys
            run_wrk(f"{url}/v1/orders", requests_file, connections=top, seconds=args.warmup)

        rows: list[tuple[str, Run, Run | None]] = []
        engine_runs: list[tuple[Run, Run]] = []
        for connections in args.connections:
            ceiling_run = measure(
                "ceiling",
                ceiling.url,
                requests_file,
                connections,
                args.durations,
                ceiling_pids,
            )
            engine_run = measure(
                "engine", engine.url, requests_file, connections, args.durations, engine_pids
            )
            rows += [("ceiling", ceiling_run, None), ("engine", engine_run, ceiling_run)]
            engine_runs.append((engine_run, ceiling_run))

        peak, peak_ceiling = max(engine_runs, key=lambda pair: pair[0].rate)
        ceiling_best = max((ceiling for _, ceiling in engine_runs), key=lambda run: run.rate)
        half_rate = peak.rate / 2
        # As many connections as the largest level, so that a connection is free at every
        # slot even when latency grows: a paced run must not become closed-loop.
        paced = measure(
            "engine",
            engine.url,
            requests_file,
            top,
            args.durations,
            engine_pids,
            rate_per_s=half_rate,
        )
        rows.append(("engine @ half", paced, None))
        limiter_redis = sum(run.metrics["limiter_redis"] for run, _ in engine_runs)
        limiter_local = sum(run.metrics["limiter_local"] for run, _ in engine_runs)
        limited = sum(run.metrics["limited"] for run, _ in engine_runs)
        measured = [run for run, _ in engine_runs] + [paced]
        collector = {
            key: sum(run.metrics[key] for run in measured)
            for key in measured[0].metrics
            if key.startswith("gc_")
        }

    postgres_profile = (
        f" ({', '.join(f'{k}={v}' for k, v in BENCH_POSTGRES_SETTINGS.items())}, WAL recycled)"
        if args.database == "throwaway"
        else ""
    )
    print(
        f"engine: PostgreSQL {args.database}{postgres_profile}, Redis {args.redis}, "
        f"{args.traders} trader keys; "
        f"wrk -t1, {args.durations} s per run after a {args.warmup} s warm-up"
    )
    print_table(rows)
    print(
        f"peak: {peak.rate:,.0f} orders/s at {peak.connections} connections; ceiling "
        f"{ceiling_best.rate:,.0f} req/s (best level); half-peak run offered "
        f"{half_rate:,.0f}/s and got {paced.rate:,.0f}/s, p99 {paced.latency('p99'):.2f} ms, "
        f"{paced.wrk['late']} late sends (max lag {paced.wrk['max_lag_ms']:.1f} ms)"
    )
    if paced.wrk["late"] > 0.01 * paced.wrk["requests"]:
        print(
            "  more than 1% of the paced sends were late: every connection was busy, so that "
            "p99 leaves out\n  the time those requests waited for one (coordinated omission)"
        )
    print(
        f"rate limiter (measured engine runs): {limiter_redis:,.0f} decisions by Redis, "
        f"{limiter_local:,.0f} by the local fallback, {limited:,.0f} refused"
    )
    passes, pass_s = collector["gc_pass_count"], collector["gc_pass_sum"]
    print(
        f"collector (every engine run): {passes:,.0f} passes, "
        f"{1000 * pass_s / max(passes, 1):.1f} ms each on average; "
        f"{collector['gc_full_count']:,.0f} full collections, "
        f"{1000 * collector['gc_full_sum']:.0f} ms in all"
    )
    figures = {
        "orders_per_s": round(peak.rate),
        "ceiling_per_s": round(ceiling_best.rate),
        "ratio": round(peak.rate / ceiling_best.rate, 3),
        "p99_ms": round(paced.latency("p99"), 2),
        "half_peak_offered_per_s": round(half_rate),
        "half_peak_achieved_per_s": round(paced.rate),
        "half_peak_p50_ms": round(paced.latency("p50"), 2),
        "half_peak_p999_ms": round(paced.latency("p99.9"), 2),
        "half_peak_late_sends": paced.wrk["late"],
        "peak_connections": peak.connections,
        "peak_p99_ms": round(peak.latency("p99"), 2),
        "ratio_same_level": round(peak.rate / peak_ceiling.rate, 3),
        "mean_batch_at_peak": round(peak.metrics["mean_batch"], 1),
        "levels": {
            str(run.connections): {
                "orders_per_s": round(run.rate),
                "ceiling_per_s": round(ceiling.rate),
                "p99_ms": round(run.latency("p99"), 2),
                "non_2xx": run.wrk["non_2xx"],
                "socket_errors": run.socket_errors,
                "other_cores": round(run.cpu["other"], 2),
            }
            for run, ceiling in engine_runs
        },
        "database": args.database,
        "redis": args.redis,
        "limiter_redis_decisions": round(limiter_redis),
        "limiter_local_decisions": round(limiter_local),
        "noisy_runs": sum(run.noisy for _, run, _ in rows),
        "gc_full_collections": round(collector["gc_full_count"]),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
