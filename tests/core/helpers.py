"""Small factories for the core tests: an engine with one instrument, orders from plain words.

Order ids are the sequence number of the command that created the order, and adding the
instrument is command 1, so the first order of a test is order 2.

``events_of`` is the one way the tests submit commands: it also checks, after every command, the
invariants that must hold whatever happened (quantities conserved, book not crossed, levels exact).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from matching_engine.core import (
    AddInstrument,
    Command,
    Event,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

SYMBOL = "BTC-USD"


def instrument(symbol: str = SYMBOL, band: object = None, **sizes: str) -> Instrument:
    """Tick 0.01, lot 0.001, quantities 0.001 to 1000 (1 to 1_000_000 lots) unless overridden."""
    grid = {
        "tick_size": "0.01",
        "lot_size": "0.001",
        "min_quantity": "0.001",
        "max_quantity": "1000",
    }
    grid.update(sizes)
    values = {name: Decimal(value) for name, value in grid.items()}
    return Instrument(symbol, price_band_pct=None if band is None else Decimal(str(band)), **values)


def engine_with(symbol: str = SYMBOL, band: object = None) -> MatchingEngine:
    engine = MatchingEngine()
    engine.submit(AddInstrument(instrument(symbol, band)))
    return engine


def _order(
    account: str,
    side: str,
    order_type: OrderType,
    qty: int,
    price: int | None,
    *,
    symbol: str = SYMBOL,
    tif: str | None = None,
    stp: str | None = None,
    **kw: Any,
) -> NewOrder:
    if stp is not None:
        kw["stp"] = SelfTradePrevention(stp)
    time_in_force = None if tif is None else TimeInForce(tif)
    return NewOrder(
        account, symbol, Side(side), order_type, qty, price, time_in_force=time_in_force, **kw
    )


def limit(account: str, side: str, qty: int, price: int | None, **kw: Any) -> NewOrder:
    return _order(account, side, OrderType.LIMIT, qty, price, **kw)


def market(account: str, side: str, qty: int, price: int | None = None, **kw: Any) -> NewOrder:
    return _order(account, side, OrderType.MARKET, qty, price, **kw)


def events_of(engine: MatchingEngine, command: Command) -> list[Event]:
    events = engine.submit(command)
    assert all(event.sequence == engine.sequence for event in events), events
    check_invariants(engine)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def place(engine: MatchingEngine, *commands: NewOrder) -> list[int]:
    """Submit orders that must be accepted; answer their ids."""
    ids = []
    for command in commands:
        events = events_of(engine, command)
        assert isinstance(events[0], OrderAccepted), events
        ids.append(events[0].order_id)
    return ids


def trade(
    sequence: int,
    trade_id: int,
    price: int,
    quantity: int,
    taker: tuple[int, str],
    maker: tuple[int, str],
    *,
    side: str = "buy",
    symbol: str = SYMBOL,
    timestamp: int = 0,
) -> Trade:
    """The expected Trade event; ``taker`` and ``maker`` are ``(order_id, account)``."""
    return Trade(
        sequence=sequence,
        trade_id=trade_id,
        symbol=symbol,
        price=price,
        quantity=quantity,
        taker_side=Side(side),
        taker_order_id=taker[0],
        maker_order_id=maker[0],
        taker_account=taker[1],
        maker_account=maker[1],
        timestamp=timestamp,
    )


def state(engine: MatchingEngine, order_id: int) -> tuple[OrderStatus, int, int, int]:
    """``(status, filled, remaining, canceled)`` of an order."""
    order = engine.order(order_id)
    assert order is not None, order_id
    return order.status, order.filled, order.remaining, order.canceled


def depth(engine: MatchingEngine, symbol: str = SYMBOL) -> tuple[list[tuple[int, int, int]], ...]:
    """``(bids, asks)`` as lists of ``(price, quantity, count)``, best first."""
    bids, asks = engine.depth(symbol, limit=1000)
    return [tuple(level) for level in bids], [tuple(level) for level in asks]


def check_invariants(engine: MatchingEngine) -> None:
    live_ids = set()
    for instrument_ in engine.instruments():
        book = engine.book(instrument_.symbol)
        assert book is not None
        bid, ask = book.best_bid_price, book.best_ask_price
        assert bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}"
        for side in (book.bids, book.asks):
            for level in side.levels.values():
                live = level.live_orders()
                assert level.count == len(live) > 0
                assert level.quantity == sum(order.remaining for order in live)
                assert level.dead == len(level.orders) - level.count, "dead entries miscounted"
                for order in live:
                    assert order.price == level.price
                    assert engine.order(order.order_id) is order
                    assert order.type is OrderType.LIMIT
                    assert order.time_in_force is TimeInForce.GTC
                    live_ids.add(order.order_id)
    assert engine.open_order_count == len(live_ids)
    for order_id in range(1, engine.sequence + 1):
        order = engine.order(order_id)
        if order is None:
            continue
        assert min(order.filled, order.remaining, order.canceled) >= 0, order
        assert order.filled + order.remaining + order.canceled == order.quantity, order
        assert (order.remaining > 0) == (order_id in live_ids), order
