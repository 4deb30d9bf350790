"""The locustfile: it imports, its trader has tasks, and a short headless run passes.

Locust patches the standard library with gevent when it is imported, so it is only ever
imported in child processes here, never in the test process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.server import ServerProcess, create_account

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "LOC-USD"
INSTRUMENT = {"symbol": SYMBOL, "tick_size": "0.01", "lot_size": "0.001",
              "min_quantity": "0.001", "max_quantity": "1000"}  # fmt: skip


def test_the_locustfile_exports_a_trader_with_tasks() -> None:
    probe = (
        "import json, loadtests.locustfile as f; "
        "print(json.dumps({'users': f.__all__, "
        "'tasks': sorted({t.__name__ for t in f.Trader.tasks})}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout.strip().splitlines()[-1])
    assert exported["users"] == ["Trader"]
    assert {"place_limit_order", "cancel_order", "amend_order", "read_book"} <= set(
        exported["tasks"]
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """The engine on its SQLite default, with an instrument and three trader keys."""
    directory = tmp_path_factory.mktemp("locust")
    env = {"ME_DATA_DIR": str(directory / "data"), "ME_LOG_LEVEL": "warning"}
    _, admin_key = create_account("locust-admin", "admin", env)
    keys = [create_account(f"locust-{i}", "trader", env)[1] for i in range(3)]
    with ServerProcess(env, directory / "server.log") as server:
        server.start()
        httpx.post(
            f"{server.url}/v1/admin/instruments",
            json=INSTRUMENT,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=10,
        ).raise_for_status()
        yield server.url, keys


def _locust(url: str, keys: list[str], out: Path, seconds: int, **env: str) -> int:
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "locust", "-f", "loadtests/locustfile.py", "--headless"),
            *("-u", "5", "-r", "5", "-t", f"{seconds}s", "--host", url),
            *("--csv", str(out), "--only-summary"),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "ME_LOCUST_KEYS": ",".join(keys),
            "ME_LOCUST_SYMBOL": SYMBOL,
            "ME_LOCUST_MAX_P99_MS": "5000",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    return result.returncode


def test_a_short_headless_run_meets_its_thresholds(
    served: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, keys = served

    assert _locust(url, keys, tmp_path / "out", seconds=5) == 0

    with (tmp_path / "out_stats.csv").open() as stats:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats)}
    assert int(rows[("POST", "/v1/orders [limit]")]["Request Count"]) > 0
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0


def test_a_run_that_misses_a_threshold_exits_1(
    served: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, keys = served

    assert _locust(url, keys, tmp_path / "out", seconds=2, ME_LOCUST_MAX_P99_MS="0") == 1
