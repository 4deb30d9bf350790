"""Errors raised by the core when a value or a command is statically invalid.

The core never raises for a command it has accepted: refusals that depend on the state of the
book (an order that is not open, a client order id reused with other parameters) are events.
Errors are only for input that can be judged on its own, before it is sequenced, so the caller
can refuse it with nothing changed. They carry a machine-readable ``code`` and nothing about HTTP.

    MatchingError  (abstract: cannot be raised directly)
    └── InvalidCommand                 code=validation_error unless a subclass says otherwise
        ├── UnknownSymbol              code=unknown_symbol
        ├── InvalidTick                code=invalid_tick
        ├── InvalidLot                 code=invalid_lot
        ├── QuantityOutOfRange         code=quantity_out_of_range
        └── InvalidAmend               code=invalid_amend
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._types import ErrorCode

__all__ = [
    "InvalidAmend",
    "InvalidCommand",
    "InvalidLot",
    "InvalidTick",
    "MatchingError",
    "QuantityOutOfRange",
    "UnknownSymbol",
]


class MatchingError(Exception):
    """Base of every core error; carries a machine-readable ``code``."""

    code: ClassVar[ErrorCode]

    def __new__(cls, *args: Any, **kwargs: Any) -> MatchingError:
        if cls is MatchingError:
            raise TypeError("MatchingError is abstract: raise one of its subclasses")
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidCommand(MatchingError):
    code = ErrorCode.VALIDATION_ERROR


class UnknownSymbol(InvalidCommand):
    code = ErrorCode.UNKNOWN_SYMBOL


class InvalidTick(InvalidCommand):
    code = ErrorCode.INVALID_TICK


class InvalidLot(InvalidCommand):
    code = ErrorCode.INVALID_LOT


class QuantityOutOfRange(InvalidCommand):
    code = ErrorCode.QUANTITY_OUT_OF_RANGE


class InvalidAmend(InvalidCommand):
    code = ErrorCode.INVALID_AMEND
