"""``python -m loadtests.chaos NAME [--duration S] [--report PATH]``: run chaos experiments.

Exit status 0 when every experiment held, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from loadtests.chaos.experiments import EXPERIMENTS, Crash, Experiment, Result
from loadtests.chaos.report import markdown

DEFAULT_REPORT = Path(__file__).resolve().parent.parent / "chaos-report.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.chaos",
        description="Break the engine's dependencies under load and check that it degrades on "
        "purpose, comes back by itself and loses nothing acknowledged.",
    )
    parser.add_argument("name", choices=[*EXPERIMENTS, "all"], help="the experiment, or all")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        metavar="S",
        help="how long each fault lasts, in seconds (default 30)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help=f"write a Markdown report here (default for all: {DEFAULT_REPORT.name} in loadtests/)",
    )
    parser.add_argument("--seed", type=int, help="seed of the load and the fault timing")
    parser.add_argument(
        "--kills", type=int, default=3, help="kill -9s in the crash experiment (default 3)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each world's directory (engine log, request history); failed ones always are",
    )
    return parser


def make(name: str, args: argparse.Namespace) -> Experiment:
    if name == Crash.name:
        return Crash(args.duration, kills=args.kills, seed=args.seed, keep=args.keep)
    return EXPERIMENTS[name](args.duration, seed=args.seed, keep=args.keep)


def _terminated(signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C, so that every fault is rolled back and every server stopped.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    if args.duration <= 0 or args.kills < 1:
        print("--duration and --kills must be positive", file=sys.stderr)
        return 2
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    started = time.monotonic()
    results: list[Result] = [make(name, args).run() for name in names]
    wall_s = time.monotonic() - started
    report = args.report or (DEFAULT_REPORT if args.name == "all" else None)
    if report is not None:
        report.write_text(markdown(results, duration_s=args.duration, wall_s=wall_s))
        print(f"report written to {report}")
    print(f"\n{'experiment':<14} verdict  wall")
    for result in results:
        print(f"{result.name:<14} {result.verdict:<8} {result.wall_s:5.1f} s")
    print(f"total {wall_s:.1f} s")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
