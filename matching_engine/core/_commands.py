"""Commands: the only inputs of the engine.

A command is an immutable value that validates what can be judged without the book in its
constructor (shapes, combinations, positivity), so an invalid command cannot exist. Prices are in
ticks and quantities in lots: the edge converts decimals with :class:`Instrument` first.

Timestamps come in with the command (integer nanoseconds since the epoch): the core never reads a
clock, so replaying the same commands yields the same events, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from ._errors import InvalidAmend, InvalidCommand
from ._instrument import Instrument
from ._types import OrderType, SelfTradePrevention, Side, TimeInForce

__all__ = [
    "AddInstrument",
    "AmendOrder",
    "CancelAll",
    "CancelOrder",
    "Command",
    "NewOrder",
    "stamped",
]

CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _require_int(name: str, value: object, *, positive: bool = True) -> None:
    # bool is an int subclass; True must not pass as a quantity of one lot.
    if type(value) is not int or (positive and value <= 0):
        raise InvalidCommand(f"{name} must be a positive integer, got {value!r}")


def _require_account(account: object) -> None:
    if not isinstance(account, str) or not account:
        raise InvalidCommand("account must be a non-empty string")


@dataclass(frozen=True, slots=True)
class AddInstrument:
    instrument: Instrument
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class NewOrder:
    """Enter an order. ``time_in_force`` defaults to gtc for limit and ioc for market orders."""

    account: str
    symbol: str
    side: Side
    type: OrderType
    quantity: int
    price: int | None = None
    time_in_force: TimeInForce | None = None
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: str | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        _require_account(self.account)
        if not isinstance(self.symbol, str):
            raise InvalidCommand("symbol must be a string")
        if not isinstance(self.side, Side):
            raise InvalidCommand(f"side must be one of {[s.value for s in Side]}")
        if not isinstance(self.type, OrderType):
            raise InvalidCommand(f"type must be one of {[t.value for t in OrderType]}")
        if not isinstance(self.stp, SelfTradePrevention):
            raise InvalidCommand(f"stp must be one of {[s.value for s in SelfTradePrevention]}")
        _require_int("quantity", self.quantity)
        tif = self.time_in_force
        if self.type is OrderType.LIMIT:
            if self.price is None:
                raise InvalidCommand("a limit order needs a price")
            _require_int("price", self.price)
            tif = TimeInForce.GTC if tif is None else tif
        else:
            if self.price is not None:
                raise InvalidCommand("a market order takes no price")
            tif = TimeInForce.IOC if tif is None else tif
            if tif is TimeInForce.GTC:
                raise InvalidCommand("a market order cannot be gtc: it never rests")
        if not isinstance(tif, TimeInForce):
            raise InvalidCommand(f"time_in_force must be one of {[t.value for t in TimeInForce]}")
        if type(self.post_only) is not bool:
            raise InvalidCommand("post_only must be a boolean")
        if self.post_only and (self.type is not OrderType.LIMIT or tif is not TimeInForce.GTC):
            raise InvalidCommand("post_only is only allowed on a gtc limit order")
        if self.client_order_id is not None and not (
            isinstance(self.client_order_id, str)
            and CLIENT_ORDER_ID_PATTERN.fullmatch(self.client_order_id)
        ):
            raise InvalidCommand(f"client_order_id must match {CLIENT_ORDER_ID_PATTERN.pattern}")
        _require_int("timestamp", self.timestamp, positive=False)
        object.__setattr__(self, "time_in_force", tif)

    def __reduce__(self) -> tuple[Callable[..., NewOrder], tuple[object, ...]]:
        # Every resting order keeps its command, so snapshots pickle many of them: the fields in
        # order, restored without validating again (a snapshot holds only commands that passed).
        # The generic dataclass state is several times slower to write and to read.
        fields = (
            self.account,
            self.symbol,
            self.side,
            self.type,
            self.quantity,
            self.price,
            self.time_in_force,
            self.post_only,
            self.stp,
            self.client_order_id,
            self.timestamp,
        )
        return _restored_new_order, fields

    def same_parameters(self, other: NewOrder) -> bool:
        """True when ``other`` asks for the same order (the idempotent-retry test)."""
        return (
            self.symbol == other.symbol
            and self.side is other.side
            and self.type is other.type
            and self.quantity == other.quantity
            and self.price == other.price
            and self.time_in_force is other.time_in_force
            and self.post_only is other.post_only
            and self.stp is other.stp
        )


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one order. ``account=None`` is an administrative cancel of any account's order."""

    account: str | None
    order_id: int
    timestamp: int = 0

    def __post_init__(self) -> None:
        if self.account is not None:
            _require_account(self.account)
        _require_int("order_id", self.order_id)


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every open order of an account, or only those of one symbol: the kill switch."""

    account: str
    symbol: str | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        _require_account(self.account)


@dataclass(frozen=True, slots=True)
class AmendOrder:
    """Change an open order's price and/or total quantity (filled quantity included)."""

    account: str
    order_id: int
    price: int | None = None
    quantity: int | None = None
    timestamp: int = 0

    def __post_init__(self) -> None:
        _require_account(self.account)
        _require_int("order_id", self.order_id)
        if self.price is None and self.quantity is None:
            raise InvalidAmend("an amend needs a price, a quantity or both")
        if self.price is not None:
            _require_int("price", self.price)
        if self.quantity is not None:
            _require_int("quantity", self.quantity)


Command: TypeAlias = AddInstrument | NewOrder | CancelOrder | CancelAll | AmendOrder


_C = TypeVar("_C", bound=Command)


def _restored_new_order(*fields: object) -> NewOrder:
    """A :class:`NewOrder` from its fields in order, without validating them again."""
    command = object.__new__(NewOrder)
    for name, value in zip(NewOrder.__slots__, fields, strict=True):
        object.__setattr__(command, name, value)
    return command


def stamped(command: _C, timestamp: int) -> _C:
    """``command`` at another time. Only the timestamp is new, so only it is checked: rebuilding
    through the constructor would validate every field again, for each command the service
    sequences."""
    _require_int("timestamp", timestamp, positive=False)
    copy = object.__new__(type(command))
    for name in command.__slots__:
        object.__setattr__(copy, name, getattr(command, name))
    object.__setattr__(copy, "timestamp", timestamp)
    return copy
