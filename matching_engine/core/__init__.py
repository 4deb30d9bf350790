"""The pure matching core: instruments, orders, price levels, the book and the engine.

No IO, no asyncio, no clock, no randomness: ``MatchingEngine.submit(command)`` turns one command
into a list of events, and the caller (the service runtime) does the IO with them. Prices and
quantities are integer ticks and lots inside; :class:`Instrument` converts decimals at the edge.

An install compiles the matching loop with mypyc (``COMPILED`` tells); the same sources run as
plain Python when it did not.
"""

from . import _compiled

# Before the modules it checks are imported: a stale compiled module must not load.
COMPILED = bool(_compiled.check_current())
CORE_BUILD = "compiled" if COMPILED else "python"  # as metrics, logs and benchmarks name it

from ._book import DepthLevel, OrderBook
from ._commands import (
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    NewOrder,
    stamped,
)
from ._engine import MatchingEngine
from ._errors import (
    InvalidAmend,
    InvalidCommand,
    InvalidLot,
    InvalidTick,
    MatchingError,
    QuantityOutOfRange,
    UnknownSymbol,
)
from ._events import (
    CommandRejected,
    DuplicateOrder,
    Event,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    Trade,
)
from ._instrument import Instrument
from ._order import Order
from ._types import (
    ErrorCode,
    OrderStatus,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

__all__ = [
    "COMPILED",
    "CORE_BUILD",
    "AddInstrument",
    "AmendOrder",
    "CancelAll",
    "CancelOrder",
    "Command",
    "CommandRejected",
    "DepthLevel",
    "DuplicateOrder",
    "ErrorCode",
    "Event",
    "Instrument",
    "InstrumentAdded",
    "InvalidAmend",
    "InvalidCommand",
    "InvalidLot",
    "InvalidTick",
    "MatchingEngine",
    "MatchingError",
    "NewOrder",
    "Order",
    "OrderAccepted",
    "OrderAmended",
    "OrderBook",
    "OrderCanceled",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "QuantityOutOfRange",
    "Reason",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
    "Trade",
    "UnknownSymbol",
    "stamped",
]
