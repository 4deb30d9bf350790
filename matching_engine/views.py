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
    tick, lot = instrument.tick_size, instrument.lot_size
    average = order.average_price_ticks
    average_price = None
    if average is not None:
        exact = Decimal(average.numerator) * tick / Decimal(average.denominator)
        average_price = plain(exact.quantize(_AVERAGE_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN))
    return OrderView(
        order_id=str(order.order_id),
        client_order_id=order.client_order_id,
        account_id=order.account,
        symbol=order.symbol,
        side=order.side.value,
        type=order.type.value,
        price=None if order.price is None else scaled(order.price, tick),
        quantity=scaled(order.quantity, lot),
        filled_quantity=scaled(order.filled, lot),
        remaining_quantity=scaled(order.remaining, lot),
        canceled_quantity=scaled(order.canceled, lot),
        average_price=average_price,
        status=order.status.value,
        reason=None if order.reason is None else order.reason.value,
        time_in_force=order.time_in_force.value,
        post_only=order.post_only,
        stp=order.stp.value,
        sequence=order.sequence,
        created_at=order.created_at,
        updated_at=order.updated_at,
        fills=fills,
    )


def trade_view(trade: Trade, instrument: Instrument) -> TradeView:
    return TradeView(
        trade_id=str(trade.trade_id),
        symbol=trade.symbol,
        price=scaled(trade.price, instrument.tick_size),
        quantity=scaled(trade.quantity, instrument.lot_size),
        taker_side=trade.taker_side.value,
        sequence=trade.sequence,
        timestamp=trade.timestamp,
    )


def fills_of_trade(trade: Trade, instrument: Instrument) -> tuple[FillView, FillView]:
    """The taker's and the maker's side of one trade."""
    price = scaled(trade.price, instrument.tick_size)
    quantity = scaled(trade.quantity, instrument.lot_size)
    taker_side = trade.taker_side
    common = {
        "trade_id": str(trade.trade_id),
        "symbol": trade.symbol,
        "price": price,
        "quantity": quantity,
        "sequence": trade.sequence,
        "timestamp": trade.timestamp,
    }
    taker = FillView(
        order_id=str(trade.taker_order_id),
        account_id=trade.taker_account,
        side=taker_side.value,
        liquidity="taker",
        **common,  # type: ignore[arg-type]
    )
    maker = FillView(
        order_id=str(trade.maker_order_id),
        account_id=trade.maker_account,
        side=taker_side.opposite.value,
        liquidity="maker",
        **common,  # type: ignore[arg-type]
    )
    return taker, maker
