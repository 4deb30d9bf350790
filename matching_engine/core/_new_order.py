"""The new-order command, compiled with the engine.

The engine reads a new order's fields on every order it enters (about ten reads). From compiled
code, a field of an interpreted object is a generic attribute lookup, about 165 instructions;
a field of a class compiled with the engine is one memory read. Compiled, this class took a
quarter of the instructions off ``submit`` (callgrind, the same 60,000 commands).

It is a plain class rather than a dataclass because a compiled dataclass checks its arguments'
types itself before validation could run: a float quantity would raise ``TypeError`` instead of
:class:`InvalidCommand`, and ``True`` would pass as one lot. Here the constructor takes any
objects and validates them itself, with the errors of every other command; equality, hashing,
``repr`` and pickling are written out. Like every command it is a value: nothing sets its fields
after the constructor (except :func:`stamped`, on a copy of its own).
"""

from __future__ import annotations

from typing import Any, cast

from ._errors import InvalidCommand
from ._types import OrderType, SelfTradePrevention, Side, TimeInForce
from ._validation import CLIENT_ORDER_ID_PATTERN, require_account, require_int

__all__ = ["NewOrder"]

_FIELDS = (
    "account",
    "symbol",
    "side",
    "type",
    "quantity",
    "price",
    "time_in_force",
    "post_only",
    "stp",
    "client_order_id",
    "timestamp",
)


class NewOrder:
    """Enter an order. ``time_in_force`` defaults to gtc for limit and ioc for market orders."""

    __slots__ = _FIELDS

    def __init__(
        self,
        account: object,
        symbol: object,
        side: object,
        type: object,
        quantity: object,
        price: object = None,
        time_in_force: object = None,
        post_only: object = False,
        stp: object = SelfTradePrevention.CANCEL_NEWEST,
        client_order_id: object = None,
        timestamp: object = 0,
    ) -> None:
        require_account(account)
        if not isinstance(symbol, str):
            raise InvalidCommand("symbol must be a string")
        if not isinstance(side, Side):
            raise InvalidCommand(f"side must be one of {[s.value for s in Side]}")
        if not isinstance(type, OrderType):
            raise InvalidCommand(f"type must be one of {[t.value for t in OrderType]}")
        if not isinstance(stp, SelfTradePrevention):
            raise InvalidCommand(f"stp must be one of {[s.value for s in SelfTradePrevention]}")
        require_int("quantity", quantity)
        tif = time_in_force
        if type is OrderType.LIMIT:
            if price is None:
                raise InvalidCommand("a limit order needs a price")
            require_int("price", price)
            tif = TimeInForce.GTC if tif is None else tif
        else:
            if price is not None:
                raise InvalidCommand("a market order takes no price")
            tif = TimeInForce.IOC if tif is None else tif
            if tif is TimeInForce.GTC:
                raise InvalidCommand("a market order cannot be gtc: it never rests")
        if not isinstance(tif, TimeInForce):
            raise InvalidCommand(f"time_in_force must be one of {[t.value for t in TimeInForce]}")
        if post_only is not True and post_only is not False:
            raise InvalidCommand("post_only must be a boolean")
        if post_only and (type is not OrderType.LIMIT or tif is not TimeInForce.GTC):
            raise InvalidCommand("post_only is only allowed on a gtc limit order")
        if client_order_id is not None and not (
            isinstance(client_order_id, str) and CLIENT_ORDER_ID_PATTERN.fullmatch(client_order_id)
        ):
            raise InvalidCommand(f"client_order_id must match {CLIENT_ORDER_ID_PATTERN.pattern}")
        require_int("timestamp", timestamp, positive=False)
        # Checked above: the casts only tell the type checker (and the compiler) so.
        self.account = cast(str, account)
        self.symbol = symbol
        self.side = side
        self.type = type
        self.quantity = cast(int, quantity)
        self.price = cast("int | None", price)
        self.time_in_force: TimeInForce | None = tif
        self.post_only = bool(post_only)
        self.stp = stp
        self.client_order_id: str | None = client_order_id
        self.timestamp = cast(int, timestamp)

    def _values(self) -> tuple[Any, ...]:
        return (
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NewOrder):
            return False
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(_FIELDS, self._values(), strict=True)
        )
        return f"NewOrder({fields})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Every resting order keeps its command, so snapshots pickle many of them: the fields
        # in order, validated again on the way back in (the constructor is the only way in).
        return NewOrder, self._values()

    def at(self, timestamp: int) -> NewOrder:
        """This order at another time. Built through the constructor, so validated again: a
        compiled class has no other way in, and compiled, the checks cost well under a
        microsecond."""
        values = list(self._values())
        values[-1] = timestamp  # the last field
        return NewOrder(*values)

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
