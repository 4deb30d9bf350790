"""The order: the only mutable record of the core.

Theory of operation
-------------------
An order keeps four integer quantities, in lots, that always add up:
``filled + remaining + canceled == quantity``. ``remaining`` is what is still working (what rests
on the book, or what an incoming order has not yet matched); it is 0 once the order is closed.

The status is not stored: it is derived from those quantities and the close reason, so it cannot
disagree with them and no transition can be forgotten. The legal transitions follow from it:

    new ──fill──> partially_filled ──fill──> filled
     │                   │
     └──cancel───────────┴──> canceled          (any reason but the two below)
    (entry) ──post-only cross / price band──> rejected

``canceled`` is derived too (``quantity - filled - remaining``): the three quantities cannot drift
apart because only two of them are stored.

The immutable parameters stay in the :class:`NewOrder` command the order was created from; the
order copies only what the matching loop reads on every fill (account, price). A resting order
also points at its price level, so a cancel finds its queue without a lookup.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._commands import NewOrder
from ._types import (
    REJECTION_REASONS,
    OrderStatus,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

if TYPE_CHECKING:
    from ._book import PriceLevel

__all__ = ["Order"]


class Order:
    __slots__ = (
        "account",
        "command",
        "filled",
        "key",
        "level",
        "notional",
        "order_id",
        "price",
        "quantity",
        "reason",
        "remaining",
        "updated_at",
    )

    def __init__(self, order_id: int, command: NewOrder) -> None:
        self.order_id = order_id
        # The id as one Python int object, the key of the engine's indexes. Compiled, an ``int``
        # field is a machine integer, and each use as a dictionary key would make a new object;
        # with one object, every index holds the same key and finds it by identity.
        self.key: object = order_id
        self.command = command
        self.account = command.account
        self.price: int | None = command.price
        self.quantity: int = command.quantity
        self.filled = 0
        self.remaining: int = command.quantity
        self.level: PriceLevel | None = None
        # Sum of price * quantity over the fills, in ticks * lots: the exact average price.
        self.notional = 0
        self.reason: Reason | None = None
        self.updated_at: int = command.timestamp

    def requeued(self, price: int, quantity: int) -> Order:
        """A copy at a new price and total quantity, for an amend that loses time priority.

        The book keeps the old object in its queue as a dead entry (``remaining == 0``), so the
        copy can join the back of a level without searching the old queue.
        """
        copy = Order(self.order_id, self.command)
        copy.key = self.key
        copy.price = price
        copy.quantity = quantity
        copy.filled = self.filled
        copy.remaining = quantity - self.filled
        copy.notional = self.notional
        copy.updated_at = self.updated_at
        self.remaining = 0
        return copy

    # -- snapshots ----------------------------------------------------------------------------

    # Snapshots pickle every order the engine knows: rebuilt through the constructor (a compiled
    # class must be), then a positional state, about twice as fast to write and to read as the
    # default of one {slot name: value} dict per order. The state (not the constructor's
    # arguments) carries the level, because a level's queue points back at its orders and
    # pickle resolves such cycles only through state.
    def __reduce__(self) -> tuple[object, ...]:
        state = (
            self.price,
            self.quantity,
            self.filled,
            self.remaining,
            self.level,
            self.notional,
            self.reason,
            self.updated_at,
        )
        return Order, (self.order_id, self.command), state

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self.price,
            self.quantity,
            self.filled,
            self.remaining,
            self.level,
            self.notional,
            self.reason,
            self.updated_at,
        ) = state

    # -- derived views ------------------------------------------------------------------------

    @property
    def canceled(self) -> int:
        """Lots that will never trade: canceled, rejected or expired."""
        return self.quantity - self.filled - self.remaining

    @property
    def side(self) -> Side:
        return self.command.side

    @property
    def status(self) -> OrderStatus:
        if self.reason in REJECTION_REASONS:
            return OrderStatus.REJECTED
        if self.filled == self.quantity:
            return OrderStatus.FILLED
        if self.canceled:
            return OrderStatus.CANCELED
        return OrderStatus.PARTIALLY_FILLED if self.filled else OrderStatus.NEW

    @property
    def is_open(self) -> bool:
        return self.remaining > 0

    @property
    def average_price_ticks(self) -> Fraction | None:
        """Quantity-weighted fill price in ticks, exact; None before the first fill."""
        return Fraction(self.notional, self.filled) if self.filled else None

    @property
    def sequence(self) -> int:
        """The sequence number of the command that created the order (its id derives from it)."""
        return self.order_id

    @property
    def symbol(self) -> str:
        return self.command.symbol

    @property
    def type(self) -> OrderType:
        return self.command.type

    @property
    def time_in_force(self) -> TimeInForce:
        tif = self.command.time_in_force
        assert tif is not None  # resolved by NewOrder.__post_init__
        return tif

    @property
    def post_only(self) -> bool:
        return self.command.post_only

    @property
    def stp(self) -> SelfTradePrevention:
        return self.command.stp

    @property
    def client_order_id(self) -> str | None:
        return self.command.client_order_id

    @property
    def created_at(self) -> int:
        return self.command.timestamp

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, {self.account}, {self.side} {self.quantity}"
            f"@{self.price}, filled={self.filled}, remaining={self.remaining}, "
            f"canceled={self.canceled}, {self.status})"
        )
