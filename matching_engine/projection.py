"""Read-model projection: what each applied command changed, as rows for the query tables.

The sequencer records every command's events here right after applying it, while the engine still
holds the touched orders in the state that command left them in. The same views answer the
request that sent the command. Rows accumulate until the projector's next write (see
:mod:`matching_engine.sequencer`); until then queries merge them over what the tables hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from matching_engine.core import (
    CommandRejected,
    DuplicateOrder,
    Event,
    InstrumentAdded,
    MatchingEngine,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    Trade,
)
from matching_engine.views import (
    FillView,
    OrderView,
    TradeView,
    fills_of_trade,
    order_view,
    trade_view,
)

__all__ = ["Projection", "touched_order_ids"]

# Tuples rather than ``A | B`` unions: isinstance takes a tuple several times faster.
_ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderCanceled, OrderAmended)
_NO_ORDER_CHANGED = (DuplicateOrder, CommandRejected, InstrumentAdded)


def touched_order_ids(events: list[Event]) -> list[int]:
    """Ids of the orders whose state the events changed, first touched first."""
    touched: dict[int, None] = {}
    for event in events:
        if isinstance(event, Trade):
            touched[event.taker_order_id] = None
            touched[event.maker_order_id] = None
        elif isinstance(event, _ORDER_EVENTS):
            touched[event.order_id] = None
        elif not isinstance(event, _NO_ORDER_CHANGED):
            raise TypeError(f"unknown event {event!r}")
    return list(touched)


@dataclass
class Projection:
    """Rows not yet in the read-model tables, up to and including ``sequence``."""

    sequence: int = 0
    orders: dict[int, OrderView] = field(default_factory=dict)
    fills: list[FillView] = field(default_factory=list)
    trades: list[TradeView] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.orders or self.fills or self.trades)

    def absorb(self, newer: Projection) -> Projection:
        """Fold rows recorded after these into this projection (when a write of it failed)."""
        self.orders.update(newer.orders)
        self.fills.extend(newer.fills)
        self.trades.extend(newer.trades)
        self.sequence = max(self.sequence, newer.sequence)
        return self

    def record(
        self, engine: MatchingEngine, sequence: int, events: list[Event]
    ) -> dict[int, OrderView]:
        """Add one applied command's changes; answer the views of the orders it touched."""
        self.sequence = sequence
        fills_by_order: dict[int, list[FillView]] = {}
        for event in events:
            if isinstance(event, Trade):
                instrument = engine.instrument(event.symbol)
                assert instrument is not None
                self.trades.append(trade_view(event, instrument))
                taker, maker = fills_of_trade(event, instrument)
                self.fills += (taker, maker)
                fills_by_order.setdefault(event.taker_order_id, []).append(taker)
                fills_by_order.setdefault(event.maker_order_id, []).append(maker)
        views: dict[int, OrderView] = {}
        for order_id in touched_order_ids(events):
            order = engine.order(order_id)
            assert order is not None  # the engine keeps what the last command closed
            instrument = engine.instrument(order.symbol)
            assert instrument is not None
            view = order_view(order, instrument, tuple(fills_by_order.get(order_id, ())))
            views[order_id] = view
            self.orders[order_id] = view
        return views
