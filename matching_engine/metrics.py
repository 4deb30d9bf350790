"""Prometheus metrics of the service runtime (the HTTP ones live with the gateway).

Names follow Prometheus conventions: one ``matching_engine_`` prefix, base units, ``_total``
counters, ``_seconds`` histograms, and labels with a small fixed set of values only (never an
order or account id).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "COMMANDS_REPLAYED",
    "JOURNAL_BATCH_SIZE",
    "JOURNAL_COMMIT_SECONDS",
    "MODE",
    "MODE_CHANGES",
    "ORDERS",
    "QUEUE_DEPTH",
    "RECOVERY_SECONDS",
    "SEQUENCE",
    "SHED",
    "SNAPSHOT_SEQUENCE",
    "SYMBOL_HALTED",
    "TRADES",
]

JOURNAL_BATCH_SIZE = Histogram(
    "matching_engine_journal_batch_commands",
    "Commands journaled per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
JOURNAL_COMMIT_SECONDS = Histogram(
    "matching_engine_journal_commit_seconds",
    "Time to journal one batch (one transaction, one commit).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ORDERS = Counter(
    "matching_engine_orders_total",
    "New orders by outcome (status after entry, or refused) and reason.",
    ["outcome", "reason"],
)
TRADES = Counter("matching_engine_trades_total", "Trades executed.", ["symbol"])
SEQUENCE = Gauge("matching_engine_sequence", "Sequence number of the last applied command.")
SNAPSHOT_SEQUENCE = Gauge(
    "matching_engine_snapshot_sequence", "Sequence number of the newest stored snapshot."
)
RECOVERY_SECONDS = Gauge(
    "matching_engine_recovery_seconds", "Duration of the last start-up recovery."
)
COMMANDS_REPLAYED = Gauge(
    "matching_engine_recovery_commands_replayed", "Commands replayed by the last recovery."
)
MODE = Gauge(
    "matching_engine_mode",
    "The engine-wide mode in effect: 1 for the current one, 0 for the others.",
    ["mode"],
)
SYMBOL_HALTED = Gauge("matching_engine_symbol_halted", "1 while the symbol is halted.", ["symbol"])
MODE_CHANGES = Counter(
    "matching_engine_mode_changes_total",
    "Changes of the engine-wide mode in effect, by who caused them.",
    ["to_mode", "cause"],
)
QUEUE_DEPTH = Gauge("matching_engine_sequencer_queue_commands", "Commands waiting to be sequenced.")
SHED = Counter(
    "matching_engine_shed_requests_total",
    "Requests refused at once because the engine was overloaded, by where they were refused.",
    ["stage"],
)
