"""Chaos experiments against the real engine: ``python -m loadtests.chaos NAME``.

Each experiment owns a world (PostgreSQL behind a fault proxy, Redis, the engine as a child
process), states a steady-state hypothesis, breaks one thing under load, rolls it back, and checks
the history of every request against what the engine holds afterwards and against a replay of its
journal. See ``experiments`` for the experiments and ``check`` for the checkers.
"""

from loadtests.chaos.check import HistoryCheck, check_history
from loadtests.chaos.experiments import EXPERIMENTS, Experiment, Result

__all__ = ["EXPERIMENTS", "Experiment", "HistoryCheck", "Result", "check_history"]
