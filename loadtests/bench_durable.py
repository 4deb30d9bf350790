"""Durable orders per second over HTTP on PostgreSQL: group commit against one commit per order.

    python -m loadtests.bench_durable [--connections 32] [--seconds 10]

Starts the real server twice on a throwaway PostgreSQL database on 127.0.0.1:5432 (created and
dropped here): once with group commit (``ME_BATCH_MAX_COMMANDS=1000``) and once with one command
per transaction (``ME_BATCH_MAX_COMMANDS=1``). Each run sends authenticated limit orders from
``--connections`` keep-alive clients for ``--seconds`` (and at most ``--max-requests``), and reads
the journal's batch-size histogram from ``/metrics``. Every 201 is an order committed to the
journal with ``synchronous_commit=on`` before it was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import tempfile
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx

from loadtests.httpclient import LoadResult, request_bytes, run_load
from loadtests.server import ServerProcess, cli, create_account

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _batch_mean(metrics_text: str) -> float:
    total = re.search(r"^matching_engine_journal_batch_commands_sum (\S+)$", metrics_text, re.M)
    count = re.search(r"^matching_engine_journal_batch_commands_count (\S+)$", metrics_text, re.M)
    if not total or not count or float(count.group(1)) == 0:
        return float("nan")
    return float(total.group(1)) / float(count.group(1))


def run(batch_max: int, args: argparse.Namespace, workdir: Path) -> tuple[LoadResult, float]:
    database = f"me_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    try:
        env = {
            "ME_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "ME_DATA_DIR": str(workdir),
            "ME_BATCH_MAX_COMMANDS": str(batch_max),
            "ME_LOG_LEVEL": "warning",
        }
        cli("migrate", env=env)
        _, admin_key = create_account("bench-admin", "admin", env)
        keys = [create_account(f"bench-{i}", "trader", env)[1] for i in range(args.connections)]
        with ServerProcess(env, workdir / f"server-{batch_max}.log") as server:
            server.start()
            instrument = {"symbol": "BENCH-USD", "tick_size": "0.01", "lot_size": "0.001",
                          "min_quantity": "0.001", "max_quantity": "1000"}  # fmt: skip
            response = httpx.post(
                f"{server.url}/v1/admin/instruments",
                json=instrument,
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            response.raise_for_status()
            rng = random.Random(1)
            bodies = []
            for _ in range(2_000):  # a third of them cross, the rest rest around the mid
                side = rng.choice(["buy", "sell"])
                offset = rng.randint(1, 50) * (1 if rng.random() < 1 / 3 else -1)
                price = 1_000 + (offset if side == "buy" else -offset) / 100
                body = {"symbol": "BENCH-USD", "side": side, "type": "limit",
                        "price": f"{price:.2f}", "quantity": f"{rng.randint(1, 500) / 1000:.3f}"}  # fmt: skip
                bodies.append(json.dumps(body).encode())
            requests = [
                request_bytes(
                    "POST",
                    "/v1/orders",
                    bodies[index % len(bodies)],
                    {
                        "Authorization": f"Bearer {keys[index % len(keys)]}",
                        "Content-Type": "application/json",
                    },
                )
                for index in range(len(keys) * 50)
            ]
            result = asyncio.run(
                run_load(
                    server.port,
                    lambda n: requests[n % len(requests)],
                    connections=args.connections,
                    seconds=args.seconds,
                    max_requests=args.max_requests,
                )
            )
            batch_mean = _batch_mean(httpx.get(f"{server.url}/metrics").text)
        return result, batch_mean
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=500_000)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for label, batch_max in (("group commit", 1_000), ("one commit per order", 1)):
            result, batch_mean = run(batch_max, args, Path(directory))
            rows.append((label, result, batch_mean))
    print(
        f"{'journal':<22}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'batch':>8}{'non-2xx':>9}{'errors':>8}"
    )
    figures = {}
    for label, result, batch_mean in rows:
        rate = result.ok / result.seconds
        non_2xx = sum(n for status, n in result.statuses.items() if not 200 <= status < 300)
        print(
            f"{label:<22}{rate:>10,.0f}{result.percentile_ms(0.5):>9.2f}"
            f"{result.percentile_ms(0.99):>9.2f}{batch_mean:>8.1f}{non_2xx:>9}{result.errors:>8}"
        )
        figures[label.replace(" ", "_")] = {
            "orders_per_s": round(rate),
            "p99_ms": round(result.percentile_ms(0.99), 2),
            "mean_batch": round(batch_mean, 1),
        }
    print(json.dumps({"connections": args.connections, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
