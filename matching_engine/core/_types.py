"""Vocabulary of the core: sides, order types, time in force, self-trade prevention, reasons.

Every enum is a ``StrEnum`` whose values are the exact strings of the REST contract, so the
gateway can serialise them as they are. Members are singletons: the hot path compares them with
``is``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ErrorCode",
    "OrderStatus",
    "OrderType",
    "Reason",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class SelfTradePrevention(StrEnum):
    """The taker's choice when it would trade against a resting order of its own account."""

    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"
    NONE = "none"


class OrderStatus(StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"


class Reason(StrEnum):
    """Why an order was closed without filling completely (the order's ``reason`` field)."""

    IOC_REMAINDER = "ioc_remainder"
    FOK_UNFILLABLE = "fok_unfillable"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    SELF_TRADE_PREVENTED = "self_trade_prevented"
    PRICE_BAND = "price_band"
    NO_LIQUIDITY = "no_liquidity"
    USER_CANCELED = "user_canceled"
    ADMIN_CANCELED = "admin_canceled"


# An order closed for one of these reasons never entered the book: its status is ``rejected``.
REJECTION_REASONS = frozenset({Reason.POST_ONLY_WOULD_CROSS, Reason.PRICE_BAND})


class ErrorCode(StrEnum):
    """Why a command was refused as a whole; the same machine-readable codes as the REST errors."""

    VALIDATION_ERROR = "validation_error"
    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID_TICK = "invalid_tick"
    INVALID_LOT = "invalid_lot"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    INVALID_AMEND = "invalid_amend"
    NOT_FOUND = "not_found"
    ORDER_NOT_OPEN = "order_not_open"
    CLIENT_ORDER_ID_CONFLICT = "client_order_id_conflict"
    INSTRUMENT_EXISTS = "instrument_exists"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    PRICE_BAND = "price_band"
