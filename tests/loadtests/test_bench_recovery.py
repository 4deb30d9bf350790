"""bench_recovery end to end, on a small journal in a throwaway PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_it_recovers_with_and_without_a_snapshot_and_reports_the_figures() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_recovery", "--commands", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["commands"] == 2000
    for key in (
        "replay_projection_s",
        "replay_projection_per_s",
        "replay_only_s",
        "replay_only_per_s",
        "snapshot_recover_s",
        "snapshot_bytes",
        "snapshot_load_s",
    ):
        assert figures[key] > 0, key
    assert figures["snapshot_replayed"] == 20  # 1% more commands after the snapshot
    assert "no snapshot, replay only" in result.stdout
