"""Commands: the only inputs of the engine.

A command is an immutable value that validates what can be judged without the book in its
constructor (shapes, combinations, positivity), so an invalid command cannot exist. Prices are in
ticks and quantities in lots: the edge converts decimals with :class:`Instrument` first.

Timestamps come in with the command (integer nanoseconds since the epoch): the core never reads a
clock, so replaying the same commands yields the same events, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from ._errors import InvalidAmend
from ._instrument import Instrument
from ._new_order import NewOrder
from ._validation import require_account, require_int

__all__ = [
    "AddInstrument",
    "AmendOrder",
    "CancelAll",
    "CancelOrder",
    "Command",
    "NewOrder",
    "stamped",
]


@dataclass(frozen=True, slots=True)
class AddInstrument:
    instrument: Instrument
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one order. ``account=None`` is an administrative cancel of any account's order."""

    account: str | None
    order_id: int
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.account is not None:
            require_account(self.account)
        require_int("order_id", self.order_id)


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every open order of an account, or only those of one symbol: the kill switch."""

    account: str
    symbol: str | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        require_account(self.account)


@dataclass(frozen=True, slots=True)
class AmendOrder:
    """Change an open order's price and/or total quantity (filled quantity included)."""

    account: str
    order_id: int
    price: int | None = None
    quantity: int | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        require_account(self.account)
        require_int("order_id", self.order_id)
        if self.price is None and self.quantity is None:
            raise InvalidAmend("an amend needs a price, a quantity or both")
        if self.price is not None:
            require_int("price", self.price)
        if self.quantity is not None:
            require_int("quantity", self.quantity)


Command: TypeAlias = AddInstrument | NewOrder | CancelOrder | CancelAll | AmendOrder


_C = TypeVar("_C", bound=Command)


def stamped(command: _C, timestamp: int) -> _C:
    """``command`` at another time. Only the timestamp is new, so only it is checked: rebuilding
    through the constructor would validate every field again, for each command the service
    sequences. A new order is the exception: compiled, its constructor is the only way to make
    one, and its checks cost well under a microsecond (:meth:`NewOrder.at`)."""
    require_int("timestamp", timestamp, positive=False)
    if isinstance(command, NewOrder):
        return command.at(timestamp)  # type: ignore[return-value]  # _C is NewOrder here
    copy = object.__new__(type(command))
    for name in command.__slots__:
        object.__setattr__(copy, name, getattr(command, name))
    object.__setattr__(copy, "timestamp", timestamp)
    return copy
