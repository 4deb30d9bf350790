"""Events: the only outputs of the engine.

``engine.submit(command)`` answers a list of these, in the order things happened. The service
journals commands, not events: events are what a command *did*, and replaying the commands gives
them back identically.

Events are immutable named tuples rather than frozen dataclasses: the engine emits one or more
per command on its hot path, and a frozen dataclass costs about eight times as much to build
(its ``__init__`` goes through ``object.__setattr__`` for every field). The engine builds them with
``tuple.__new__`` directly, which skips the generated ``__new__`` wrapper as well.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

from ._instrument import Instrument
from ._types import ErrorCode, Reason, Side

__all__ = [
    "CommandRejected",
    "DuplicateOrder",
    "Event",
    "InstrumentAdded",
    "OrderAccepted",
    "OrderAmended",
    "OrderCanceled",
    "OrderRejected",
    "Trade",
]


class InstrumentAdded(NamedTuple):
    sequence: int
    instrument: Instrument


class OrderAccepted(NamedTuple):
    """The order entered the engine; trades, a cancel or nothing (it rests) may follow."""

    sequence: int
    order_id: int


class OrderRejected(NamedTuple):
    """The order was created but refused before it could trade (post-only cross, price band)."""

    sequence: int
    order_id: int
    reason: Reason


class Trade(NamedTuple):
    """One fill between the taker (the incoming order) and a resting maker, at the maker's price."""

    sequence: int
    trade_id: int
    symbol: str
    price: int
    quantity: int
    taker_side: Side
    taker_order_id: int
    maker_order_id: int
    taker_account: str
    maker_account: str
    timestamp: int


class OrderCanceled(NamedTuple):
    """``quantity`` lots of the order will never trade; the order is closed."""

    sequence: int
    order_id: int
    quantity: int
    reason: Reason


class OrderAmended(NamedTuple):
    sequence: int
    order_id: int
    price: int
    quantity: int
    priority_kept: bool


class DuplicateOrder(NamedTuple):
    """An idempotent retry: the client order id was used before with the same parameters."""

    sequence: int
    order_id: int


class CommandRejected(NamedTuple):
    """The command changed nothing; ``code`` says why."""

    sequence: int
    code: ErrorCode
    order_id: int | None = None


Event: TypeAlias = (
    InstrumentAdded
    | OrderAccepted
    | OrderRejected
    | Trade
    | OrderCanceled
    | OrderAmended
    | DuplicateOrder
    | CommandRejected
)
