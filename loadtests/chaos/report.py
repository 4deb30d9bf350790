"""The Markdown report of a chaos run: one table row and one paragraph per experiment."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime

from loadtests.chaos.experiments import Result
from loadtests.chaos.world import BASE_ENV

__all__ = ["markdown"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _row(result: Result) -> str:
    replay = "-" if result.replay_equal is None else ("yes" if result.replay_equal else "**no**")
    verdict = result.verdict if result.passed else f"**{result.verdict}**"
    cells = [
        f"`{result.name}`",
        result.fault,
        f"{result.duration_s:g} s",
        f"{result.acked} + {result.acked_cancels}",
        str(result.lost),
        str(result.non_503_5xx),
        _seconds(result.detect_s),
        _ms(result.fast_fail_p99_ms),
        _seconds(result.recovery_s),
        replay,
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def _paragraph(result: Result) -> list[str]:
    statuses = ", ".join(f"{name}: {count}" for name, count in sorted(result.statuses.items()))
    lines = [
        f"### `{result.name}`: {result.verdict}",
        "",
        f"**Fault.** {result.fault[0].upper()}{result.fault[1:]}, held {result.duration_s:g} s under load (seed {result.seed}, "
        f"{result.wall_s:.0f} s in all).",
        "",
        f"**Hypothesis.** {result.hypothesis[0].upper()}{result.hypothesis[1:]}.",
        "",
        f"**What happened.** {result.requests} requests ({statuses}). "
        f"Acknowledged: {result.acked} orders and {result.acked_cancels} cancels, of which lost "
        f"or changed: {result.lost + result.mismatched}. Orders without a definite answer: "
        f"{result.in_doubt}, of which the engine holds {result.recovered}. "
        f"Fault detected after {_seconds(result.detect_s)}, fast-fail p99 "
        f"{_ms(result.fast_fail_p99_ms)}, p99 of every answer during the fault "
        f"{_ms(result.fault_p99_ms)}, slowest answer {_ms(result.slowest_answer_ms)}, back to "
        f"normal {_seconds(result.recovery_s)} after the fault ended.",
    ]
    if result.replay:
        shown = ", ".join(f"{name} {value}" for name, value in result.replay.items())
        agreed = "agreed with" if result.replay_equal else "did **not** agree with"
        lines += [
            "",
            f"**Replay.** `matching-engine replay` ({shown}) {agreed} the engine before the "
            "stop and after a restart.",
        ]
    if result.env:
        overrides = ", ".join(f"`{name}={value}`" for name, value in result.env.items())
        lines += ["", f"**Settings of its own.** {overrides}."]
    if result.figures:
        lines += [
            "",
            "**Figures.** " + "; ".join(f"{k}: {v}" for k, v in result.figures.items()) + ".",
        ]
    for heading, items in (("Violations", result.violations), ("Notes", result.notes)):
        if items:
            lines += ["", f"**{heading}.**", ""] + [f"- {item}" for item in items]
    if result.error:
        lines += ["", "**Error.**", "", "```", result.error, "```"]
    return lines


def markdown(results: Sequence[Result], *, duration_s: float, wall_s: float) -> str:
    settings = ", ".join(f"`{name}={value}`" for name, value in BASE_ENV.items())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    failed = [result.name for result in results if not result.passed]
    lines = [
        "# Chaos experiments",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPUs, load average "
        f"{load} at the end, Python {platform.python_version()}), "
        f"`python -m loadtests.chaos all --duration {duration_s:g}`: "
        f"{len(results)} experiments in {wall_s:.0f} s, "
        + ("all passed." if not failed else f"**failed: {', '.join(failed)}**."),
        "",
        "Each experiment starts its own PostgreSQL (behind a fault-injecting proxy), Redis and "
        f"engine on 127.0.0.1, with {settings}. *Lost* counts acknowledged orders and cancels "
        "missing or changed afterwards; *detect* is the time from the fault to the first sign "
        "of the engine degrading on purpose (a 503 `read_only`/`overloaded`, a 429, or "
        "`GET /v1/admin/mode` polled every 100 ms); *fast-fail p99* is the 99th percentile "
        "latency of those refusals; *recovery* is the time from the end of the fault to the "
        "engine being normal again and accepting orders; *replay equal* compares "
        "`matching-engine replay` with the engine before a stop and after a restart.",
        "",
        "| experiment | fault | duration | acked (orders + cancels) | lost | non-503 5xx | detect "
        "| fast-fail p99 "
        "| recovery | replay equal | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(result) for result in results),
        "",
    ]
    for result in results:
        lines += [*_paragraph(result), ""]
    return "\n".join(lines)
