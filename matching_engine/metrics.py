"""Prometheus metrics of the service runtime (the HTTP ones live with the gateway).

Names follow Prometheus conventions: one ``matching_engine_`` prefix, base units, ``_total``
counters, ``_seconds`` histograms, and labels with a small fixed set of values only (never an
order or account id).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from matching_engine import __version__
from matching_engine.core import CORE_BUILD, Event, MatchingEngine, Trade

__all__ = [
    "BEST_PRICES",
    "BUILD_INFO",
    "COMMANDS_REPLAYED",
    "GC_PAUSE_SECONDS",
    "JOURNAL_BATCH_SIZE",
    "JOURNAL_COMMIT_SECONDS",
    "MATCH_SECONDS",
    "MODE",
    "MODE_CHANGES",
    "ORDERS",
    "QUEUE_DEPTH",
    "RECOVERY_SECONDS",
    "SEQUENCE",
    "SHED",
    "SNAPSHOT_AGE",
    "SNAPSHOT_SEQUENCE",
    "SNAPSHOT_TIMESTAMP",
    "SYMBOL_HALTED",
    "TRADED_QUANTITY",
    "TRADES",
    "labelled",
    "observe_match",
    "orders_by_outcome",
    "publish_best_prices",
    "record_snapshot",
]

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


def labelled(metric: _Metric) -> Callable[..., _Metric]:
    """``metric.labels``, remembered per label values.

    prometheus_client checks the values and takes a lock on every ``labels()`` call, which costs
    more than the increment; the hot path counts several per request. Only for metrics whose
    label values come from small, fixed sets and that are never cleared.
    """
    return functools.lru_cache(maxsize=1024)(metric.labels)


BUILD_INFO = Info(
    "matching_engine_build",
    "The running version of the engine, and whether its core is compiled (mypyc) or plain Python.",
)
BUILD_INFO.info({"version": __version__, "core": CORE_BUILD})

GC_PAUSE_SECONDS = Histogram(
    "matching_engine_gc_pause_seconds",
    "The garbage collector's pauses the engine makes on purpose: every request waits them out. "
    "kind=pass: what is not frozen yet collected, survivors frozen (four a second); kind=full: "
    "everything thawed and collected (minutes apart).",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
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
TRADED_QUANTITY = Counter(
    "matching_engine_traded_quantity_total",
    "Quantity traded, in instrument units (lots times the lot size).",
    ["symbol"],
)
MATCH_SECONDS = Histogram(
    "matching_engine_match_seconds",
    "Time to apply one command to the core (matching only: no IO, no read-model rows).",
    buckets=(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2),
)
SEQUENCE = Gauge("matching_engine_sequence", "Sequence number of the last applied command.")
SNAPSHOT_SEQUENCE = Gauge(
    "matching_engine_snapshot_sequence", "Sequence number of the newest stored snapshot."
)
SNAPSHOT_TIMESTAMP = Gauge(
    "matching_engine_snapshot_last_timestamp_seconds",
    "When the newest stored snapshot was taken, in Unix time; 0 while there is none.",
)
SNAPSHOT_AGE = Gauge(
    "matching_engine_snapshot_age_seconds",
    "Seconds since the newest stored snapshot was taken; NaN while there is none.",
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
READ_MODEL_LAG = Gauge(
    "matching_engine_read_model_lag_commands",
    "Applied commands whose read-model rows are not written yet (queries merge them meanwhile).",
)
SHED = Counter(
    "matching_engine_shed_requests_total",
    "Requests refused at once because the engine was overloaded, by where they were refused.",
    ["stage"],
)

_snapshot_taken_at = math.nan
SNAPSHOT_AGE.set_function(lambda: time.time() - _snapshot_taken_at)


def record_snapshot(taken_at_s: float) -> None:
    """The newest stored snapshot was taken at ``taken_at_s`` (Unix time)."""
    global _snapshot_taken_at
    _snapshot_taken_at = taken_at_s
    SNAPSHOT_TIMESTAMP.set(taken_at_s)


orders_by_outcome = labelled(ORDERS)
_trades, _traded_quantity = labelled(TRADES), labelled(TRADED_QUANTITY)


def observe_match(engine: MatchingEngine, events: list[Event], seconds: float) -> None:
    """Count one command the core applied in ``seconds``, and the trades it made."""
    MATCH_SECONDS.observe(seconds)
    for event in events:
        if isinstance(event, Trade):
            instrument = engine.instrument(event.symbol)
            assert instrument is not None
            _trades(event.symbol).inc()
            _traded_quantity(event.symbol).inc(float(event.quantity * instrument.lot_size))


class BestPrices(Collector):
    """The best bid and ask of every listed symbol, in price units, read from the books when
    Prometheus scrapes: setting two gauges after every batch cost the writer a lock per symbol
    and per side, for values that only a scrape reads. NaN while a side is empty."""

    def __init__(self) -> None:
        self.engine: MatchingEngine | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        bids = GaugeMetricFamily(
            "matching_engine_best_bid_price",
            "Best bid, in price units; NaN while no bid rests.",
            labels=["symbol"],
        )
        asks = GaugeMetricFamily(
            "matching_engine_best_ask_price",
            "Best ask, in price units; NaN while no ask rests.",
            labels=["symbol"],
        )
        engine = self.engine
        if engine is not None:
            for instrument in engine.instruments():
                book = engine.book(instrument.symbol)
                if book is None:
                    continue
                tick = instrument.tick_size
                for family, price in ((bids, book.best_bid_price), (asks, book.best_ask_price)):
                    value = math.nan if price is None else float(price * tick)
                    family.add_metric([instrument.symbol], value)
        yield bids
        yield asks


BEST_PRICES = BestPrices()
REGISTRY.register(BEST_PRICES)


def publish_best_prices(engine: MatchingEngine) -> None:
    """Show ``engine``'s best prices from now on (the process's one engine)."""
    BEST_PRICES.engine = engine
