"""Read-only views of orders, fills, trades and books, in decimals: what the gateway shows.

The core speaks integer ticks and lots; these views are taken at a point in time (right after a
command, or from the read models) and convert with the instrument's grid. They are immutable, so
a view handed to a request can never change under it. Those built for every order (orders,
fills, trades) are named tuples: a frozen dataclass costs nearly twice as much to build.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from matching_engine.core import Instrument, Order, Trade

__all__ = [
    "BookView",
    "FillView",
    "OrderView",
    "TradeView",
    "average_price",
    "fills_of_trade",
    "order_view",
    "plain",
    "scaled",
]

_AVERAGE_PRICE_QUANTUM = Decimal("1e-8")


def plain(value: Decimal) -> Decimal:
    """The value without exponent notation or trailing zeros: 1.500 -> 1.5, 0E-8 -> 0."""
    normalized = value.normalize()
    return normalized.quantize(Decimal(1)) if normalized == normalized.to_integral() else normalized


@functools.lru_cache(maxsize=65_536)
def scaled(units: int, step: Decimal) -> Decimal:
    """``units`` ticks or lots of a grid ``step``, as a plain decimal.

    Remembered: a book's prices and quantities repeat, and every view of an order converts
    five of them, each a multiplication and a normalisation.
    """
    return plain(units * step)


class FillView(NamedTuple):
    trade_id: str
    order_id: str
    account_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    liquidity: str  # "maker" | "taker"
    sequence: int
    timestamp: int  # ns since the epoch


class OrderView(NamedTuple):
    order_id: str
    client_order_id: str | None
    account_id: str
    symbol: str
    side: str
    type: str
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    canceled_quantity: Decimal
    average_price: Decimal | None
    status: str
    reason: str | None
    time_in_force: str
    post_only: bool
    stp: str
    sequence: int
    created_at: int  # ns since the epoch
    updated_at: int
    fills: tuple[FillView, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")

    def row(self) -> dict[str, Any]:
        """The ``orders`` read-model row (fills are stored apart)."""
        row = self._asdict()
        del row["fills"]
        row["order_id"] = int(self.order_id)
        for name in ("price", "quantity", "filled_quantity", "remaining_quantity"):
            row[name] = None if row[name] is None else str(row[name])
        row["canceled_quantity"] = str(self.canceled_quantity)
        row["average_price"] = None if self.average_price is None else str(self.average_price)
        return row


class TradeView(NamedTuple):
    trade_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    taker_side: str
    sequence: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class BookView:
    symbol: str
    sequence: int
    bids: list[tuple[Decimal, Decimal, int]]
    asks: list[tuple[Decimal, Decimal, int]]


def order_view(order: Order, instrument: Instrument, fills: tuple[FillView, ...] = ()) -> OrderView:
    # Built for every order a command touches, so it reads the command's fields directly rather
    # than through the order's properties, and takes each enum's plain ``_value_`` rather than
    # ``.value``, a descriptor that costs several times as much.
    command = order.command
    tick, lot = instrument.tick_size, instrument.lot_size
    reason = order.reason
    time_in_force = command.time_in_force
    assert time_in_force is not None  # resolved when the command was made
    return OrderView(
        order_id=str(order.order_id),
        client_order_id=command.client_order_id,
        account_id=order.account,
        symbol=command.symbol,
        side=command.side._value_,
        type=command.type._value_,
        price=None if order.price is None else scaled(order.price, tick),
        quantity=scaled(order.quantity, lot),
        filled_quantity=scaled(order.filled, lot),
        remaining_quantity=scaled(order.remaining, lot),
        canceled_quantity=scaled(order.canceled, lot),
        average_price=average_price(order, tick),
        status=order.status._value_,
        reason=None if reason is None else reason._value_,
        time_in_force=time_in_force._value_,
        post_only=command.post_only,
        stp=command.stp._value_,
        sequence=order.order_id,  # an order's id is the sequence of the command that made it
        created_at=command.timestamp,
        updated_at=order.updated_at,
        fills=fills,
    )


def average_price(order: Order, tick: Decimal) -> Decimal | None:
    """The quantity-weighted fill price, rounded half-even to 8 places; None before a fill."""
    filled = order.filled
    if not filled:
        return None
    ticks, rest = divmod(order.notional, filled)
    if not rest and _on_average_grid(tick):
        return scaled(ticks, tick)  # a whole number of ticks: exact, nothing to round
    average = order.average_price_ticks
    assert average is not None
    exact = Decimal(average.numerator) * tick / Decimal(average.denominator)
    return plain(exact.quantize(_AVERAGE_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN))


@functools.lru_cache(maxsize=256)
def _on_average_grid(tick: Decimal) -> bool:
    """Whether every multiple of ``tick`` has at most 8 decimal places (so rounds to itself)."""
    exponent = tick.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -8


def trade_view(trade: Trade, instrument: Instrument) -> TradeView:
    return TradeView(
        trade_id=str(trade.trade_id),
        symbol=trade.symbol,
        price=scaled(trade.price, instrument.tick_size),
        quantity=scaled(trade.quantity, instrument.lot_size),
        taker_side=trade.taker_side._value_,
        sequence=trade.sequence,
        timestamp=trade.timestamp,
    )


def fills_of_trade(trade: Trade, instrument: Instrument) -> tuple[FillView, FillView]:
    """The taker's and the maker's side of one trade (fields in FillView's order)."""
    trade_id, symbol = str(trade.trade_id), trade.symbol
    price = scaled(trade.price, instrument.tick_size)
    quantity = scaled(trade.quantity, instrument.lot_size)
    sequence, timestamp, side = trade.sequence, trade.timestamp, trade.taker_side
    return (
        FillView(trade_id, str(trade.taker_order_id), trade.taker_account, symbol,
                 side._value_, price, quantity, "taker", sequence, timestamp),
        FillView(trade_id, str(trade.maker_order_id), trade.maker_account, symbol,
                 side.opposite._value_, price, quantity, "maker", sequence, timestamp),
    )  # fmt: skip
