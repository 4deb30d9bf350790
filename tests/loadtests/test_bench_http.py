"""The wrk script and the parser bench_http reads its summary with."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.bench_http import (
    CeilingProcess,
    order_bodies,
    parse_wrk_output,
    run_wrk,
    write_requests,
    wrk_command,
)

LATENCY_KEYS = {"min", "mean", "max", "stdev", "p50", "p90", "p99", "p99.9"}
SOCKET_KEYS = {"connect", "read", "write", "timeout"}


def test_the_parser_takes_the_last_result_line_among_wrk_output() -> None:
    line = {"requests": 3, "non_2xx": 1, "latency_ms": {"p99": 1.5}}
    output = f"Running 1s test\nwrk-result {{}}\n  3 requests\nwrk-result {json.dumps(line)}\n"

    assert parse_wrk_output(output) == line


def test_the_parser_refuses_output_without_a_result_line() -> None:
    with pytest.raises(ValueError, match="wrk-result"):
        parse_wrk_output("Running 1s test\nRequests/sec: 10\n")


def test_a_paced_command_passes_the_rate_and_the_thread_count_to_the_script() -> None:
    command = wrk_command(
        "http://127.0.0.1:1/v1/orders", Path("r.tsv"), connections=4, seconds=2, rate_per_s=250
    )

    assert command[:7] == ["wrk", "-t", "1", "-c", "4", "-d", "2s"]
    assert command[-4:] == ["--", "r.tsv", "250.0", "1"]


needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeilingProcess]:
    server = CeilingProcess(tmp_path_factory.mktemp("ceiling") / "ceiling.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.tsv"
    write_requests(path, ["key-a", "key-b", "key-c"], order_bodies(30))
    return path


@needs_wrk
def test_the_scripts_summary_parses_with_every_figure(
    ceiling: CeilingProcess, requests_file: Path
) -> None:
    result = run_wrk(f"{ceiling.url}/v1/orders", requests_file, connections=4, seconds=1)

    assert result["requests"] > 0
    assert result["non_2xx"] == 0
    assert 0.9 < result["duration_s"] < 3
    assert set(result["latency_ms"]) == LATENCY_KEYS
    assert set(result["socket_errors"]) == SOCKET_KEYS
    assert sum(result["socket_errors"].values()) == 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert result["target_rate_per_s"] == 0


@needs_wrk
def test_a_paced_run_offers_the_rate_it_was_given(
    ceiling: CeilingProcess, requests_file: Path
) -> None:
    result = run_wrk(
        f"{ceiling.url}/v1/orders", requests_file, connections=4, seconds=2, rate_per_s=200
    )

    assert result["target_rate_per_s"] == 200
    assert 300 <= result["requests"] <= 500  # 200/s for 2 s, give or take the edges
    assert result["non_2xx"] == 0


def test_every_body_is_a_limit_order_and_about_a_third_cross() -> None:
    bodies = [json.loads(body) for body in order_bodies(3_000)]

    assert {body["type"] for body in bodies} == {"limit"}
    crossing = sum((float(body["price"]) > 1_000) == (body["side"] == "buy") for body in bodies)
    assert 0.28 < crossing / len(bodies) < 0.39
