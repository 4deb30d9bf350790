"""Events: the only outputs of the engine.

``engine.submit(command)`` answers a list of these, in the order things happened. The service
journals commands, not events: events are what a command *did*, and replaying the commands gives
them back identically.

Events are small immutable value objects: equal when their class and fields are, hashable,
printed with their field names, and pickled by their fields (recent trades are part of a
snapshot). They are plain classes with ``__slots__`` rather than named tuples because this module
is compiled with the engine (see ``setup.py``): the engine emits one or more per command on its
hot path, and a compiled class is built by a direct call, where a named tuple took a generic
``tuple.__new__`` call and two tuple allocations: the change took a quarter of the
instructions off ``submit`` (callgrind, the same 60,000 commands).
Nothing sets their attributes after ``__init__``.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias

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


class _Event:
    """Equality, hashing, printing and pickling, from the fields named in ``_fields``."""

    _fields: ClassVar[tuple[str, ...]] = ()
    __slots__ = _fields

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        # Never equal to anything but an event of the same class (the compiled class must
        # answer a bool, so there is no NotImplemented to hand the question to the other side).
        if type(other) is not type(self):
            return False
        assert isinstance(other, _Event)
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), self._values()


class InstrumentAdded(_Event):
    _fields: ClassVar[tuple[str, ...]] = ("sequence", "instrument")
    __slots__ = _fields

    def __init__(self, sequence: int, instrument: Instrument) -> None:
        self.sequence: int = sequence
        self.instrument: Instrument = instrument


class OrderAccepted(_Event):
    """The order entered the engine; trades, a cancel or nothing (it rests) may follow."""

    _fields: ClassVar[tuple[str, ...]] = ("sequence", "order_id")
    __slots__ = _fields

    def __init__(self, sequence: int, order_id: int) -> None:
        self.sequence: int = sequence
        self.order_id: int = order_id


class OrderRejected(_Event):
    """The order was created but refused before it could trade (post-only cross, price band)."""

    _fields: ClassVar[tuple[str, ...]] = ("sequence", "order_id", "reason")
    __slots__ = _fields

    def __init__(self, sequence: int, order_id: int, reason: Reason) -> None:
        self.sequence: int = sequence
        self.order_id: int = order_id
        self.reason: Reason = reason


class Trade(_Event):
    """One fill between the taker (the incoming order) and a resting maker, at the maker's price."""

    _fields: ClassVar[tuple[str, ...]] = (
        "sequence",
        "trade_id",
        "symbol",
        "price",
        "quantity",
        "taker_side",
        "taker_order_id",
        "maker_order_id",
        "taker_account",
        "maker_account",
        "timestamp",
    )
    __slots__ = _fields

    def __init__(
        self,
        sequence: int,
        trade_id: int,
        symbol: str,
        price: int,
        quantity: int,
        taker_side: Side,
        taker_order_id: int,
        maker_order_id: int,
        taker_account: str,
        maker_account: str,
        timestamp: int,
    ) -> None:
        self.sequence: int = sequence
        self.trade_id: int = trade_id
        self.symbol: str = symbol
        self.price: int = price
        self.quantity: int = quantity
        self.taker_side: Side = taker_side
        self.taker_order_id: int = taker_order_id
        self.maker_order_id: int = maker_order_id
        self.taker_account: str = taker_account
        self.maker_account: str = maker_account
        self.timestamp: int = timestamp


class OrderCanceled(_Event):
    """``quantity`` lots of the order will never trade; the order is closed."""

    _fields: ClassVar[tuple[str, ...]] = ("sequence", "order_id", "quantity", "reason")
    __slots__ = _fields

    def __init__(self, sequence: int, order_id: int, quantity: int, reason: Reason) -> None:
        self.sequence: int = sequence
        self.order_id: int = order_id
        self.quantity: int = quantity
        self.reason: Reason = reason


class OrderAmended(_Event):
    _fields: ClassVar[tuple[str, ...]] = (
        "sequence",
        "order_id",
        "price",
        "quantity",
        "priority_kept",
    )
    __slots__ = _fields

    def __init__(
        self, sequence: int, order_id: int, price: int, quantity: int, priority_kept: bool
    ) -> None:
        self.sequence: int = sequence
        self.order_id: int = order_id
        self.price: int = price
        self.quantity: int = quantity
        self.priority_kept: bool = priority_kept


class DuplicateOrder(_Event):
    """An idempotent retry: the client order id was used before with the same parameters."""

    _fields: ClassVar[tuple[str, ...]] = ("sequence", "order_id")
    __slots__ = _fields

    def __init__(self, sequence: int, order_id: int) -> None:
        self.sequence: int = sequence
        self.order_id: int = order_id


class CommandRejected(_Event):
    """The command changed nothing; ``code`` says why."""

    _fields: ClassVar[tuple[str, ...]] = ("sequence", "code", "order_id")
    __slots__ = _fields

    def __init__(self, sequence: int, code: ErrorCode, order_id: int | None = None) -> None:
        self.sequence: int = sequence
        self.code: ErrorCode = code
        self.order_id: int | None = order_id


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
