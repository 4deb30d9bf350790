"""Request and response bodies of the REST contract (API.md), as pydantic models.

Requests forbid unknown fields and take prices and quantities only as JSON strings in plain
decimal notation: a JSON number is refused, because a client's float may already have lost the
value it meant. Responses render decimals with ``str`` (the service's views are normalised) and
timestamps as RFC 3339 UTC strings with nanosecond precision, the precision of the engine's clock.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from matching_engine.accounts import AccountRecord
from matching_engine.audit import AuditEntry
from matching_engine.core import Instrument as CoreInstrument
from matching_engine.views import BookView, FillView, OrderView, TradeView, plain

__all__ = [
    "AccountCreate",
    "AccountCreated",
    "AccountOut",
    "AuditOut",
    "Book",
    "CancelAll",
    "Fill",
    "InstrumentCreate",
    "InstrumentOut",
    "Liveness",
    "ModeChange",
    "ModeStatus",
    "OrderAmend",
    "OrderCreate",
    "OrderFill",
    "OrderOut",
    "Readiness",
    "Trade",
    "order_fields",
    "rfc3339",
]

SYMBOL_PATTERN = r"^[A-Z0-9]{1,12}(-[A-Z0-9]{1,12})?$"
CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DECIMAL_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,20})?$"
_DECIMAL = re.compile(DECIMAL_PATTERN)


def _decimal_string(value: object) -> Decimal:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return Decimal(value)
    raise PydanticCustomError(
        "decimal_string", 'Input should be a decimal string such as "101.25", not a JSON number'
    )


DecimalString = Annotated[
    Decimal,
    PlainValidator(_decimal_string),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "examples": ["101.25"]}),
]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, examples=["BTC-USD"])]
ClientOrderId = Annotated[str, Field(pattern=CLIENT_ORDER_ID_PATTERN, examples=["abc-1"])]
Timestamp = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        examples=["2026-11-21T20:31:05.123456789Z"],
        description="RFC 3339, UTC, nanosecond precision.",
    ),
]
DecimalText = Annotated[str, Field(description="A decimal string.", examples=["101.25"])]

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["gtc", "ioc", "fok"]
Stp = Literal["cancel_newest", "cancel_oldest", "cancel_both", "none"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected"]
Reason = Literal[
    "ioc_remainder",
    "fok_unfillable",
    "post_only_would_cross",
    "self_trade_prevented",
    "price_band",
    "no_liquidity",
    "user_canceled",
    "admin_canceled",
]
Liquidity = Literal["maker", "taker"]
Role = Literal["trader", "admin"]


def rfc3339(ns: int) -> str:
    """Integer nanoseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``."""
    seconds, nanoseconds = divmod(ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{nanoseconds:09d}Z"


@functools.lru_cache(maxsize=1024)
def _utc_second(seconds: int) -> str:
    # Most timestamps of a response fall in the same few seconds; formatting a datetime is the
    # costly part.
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -----------------------------------------------------------------------------------


class OrderCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-USD",
                    "side": "buy",
                    "type": "limit",
                    "price": "101.25",
                    "quantity": "1.5",
                    "time_in_force": "gtc",
                    "post_only": False,
                    "client_order_id": "abc-1",
                    "stp": "cancel_newest",
                },
                {"symbol": "BTC-USD", "side": "sell", "type": "market", "quantity": "0.5"},
            ]
        }
    )

    symbol: Symbol
    side: Side
    type: OrderType
    price: DecimalString | None = Field(
        default=None, description="Required for a limit order, forbidden for a market order."
    )
    quantity: DecimalString
    time_in_force: TimeInForce | None = Field(
        default=None, description="Default gtc for a limit order, ioc for a market order."
    )
    post_only: StrictBool = Field(default=False, description="Only with a gtc limit order.")
    client_order_id: ClientOrderId | None = Field(
        default=None, description="Unique per account; a retry with it is idempotent."
    )
    stp: Stp = Field(
        default="cancel_newest",
        description="Self-trade prevention: what happens when this order would trade with a "
        "resting order of the same account.",
    )


class OrderAmend(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"price": "101.30"}, {"quantity": "1.0"}]}
    )

    price: DecimalString | None = None
    quantity: DecimalString | None = Field(
        default=None, description="The new total quantity; it must exceed the filled quantity."
    )


class InstrumentCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-USD",
                    "tick_size": "0.01",
                    "lot_size": "0.001",
                    "min_quantity": "0.001",
                    "max_quantity": "1000",
                    "price_band_pct": "10",
                }
            ]
        }
    )

    symbol: Symbol
    tick_size: DecimalString
    lot_size: DecimalString
    min_quantity: DecimalString
    max_quantity: DecimalString
    price_band_pct: DecimalString | None = Field(
        default=None,
        description="Limit prices must be within this percentage of the last trade; null: no band.",
    )

    def instrument(self) -> CoreInstrument:
        return CoreInstrument(
            symbol=self.symbol,
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            min_quantity=self.min_quantity,
            max_quantity=self.max_quantity,
            price_band_pct=self.price_band_pct,
        )


class AccountCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "desk-1", "role": "trader"}]}
    )

    name: str = Field(min_length=1, max_length=200)
    role: Role


# -- responses ----------------------------------------------------------------------------------


class OrderFill(BaseModel):
    trade_id: str
    price: DecimalText
    quantity: DecimalText
    liquidity: Liquidity
    sequence: int


class OrderOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "42",
                    "client_order_id": "abc-1",
                    "account_id": "acc_5f0c2a9d1e3b4c6a",
                    "symbol": "BTC-USD",
                    "side": "buy",
                    "type": "limit",
                    "price": "101.25",
                    "quantity": "1.5",
                    "filled_quantity": "0.5",
                    "remaining_quantity": "1",
                    "canceled_quantity": "0",
                    "average_price": "101.2",
                    "status": "partially_filled",
                    "reason": None,
                    "time_in_force": "gtc",
                    "post_only": False,
                    "stp": "cancel_newest",
                    "sequence": 42,
                    "created_at": "2026-11-21T20:31:05.123456789Z",
                    "updated_at": "2026-11-21T20:31:05.123456789Z",
                    "fills": [
                        {
                            "trade_id": "17",
                            "price": "101.2",
                            "quantity": "0.5",
                            "liquidity": "taker",
                            "sequence": 42,
                        }
                    ],
                }
            ]
        }
    )

    order_id: str
    client_order_id: str | None
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    price: DecimalText | None
    quantity: DecimalText
    filled_quantity: DecimalText
    remaining_quantity: DecimalText = Field(description="What still rests on the book.")
    canceled_quantity: DecimalText = Field(description="What will never trade.")
    average_price: DecimalText | None = Field(
        description="Quantity-weighted fill price, rounded half-even to 8 places; null with no fills."
    )
    status: OrderStatus
    reason: Reason | None
    time_in_force: TimeInForce
    post_only: bool
    stp: Stp
    sequence: int
    created_at: Timestamp
    updated_at: Timestamp
    fills: list[OrderFill] = Field(description="In execution order.")

    @classmethod
    def of(cls, view: OrderView) -> OrderOut:
        return cls.model_validate(order_fields(view))


def order_fields(view: OrderView) -> dict[str, Any]:
    """The fields of :class:`OrderOut` for ``view``, in its order, as JSON values.

    The order fast path (:mod:`api.order_entry`) writes these as they are: the view is the
    engine's own, so validating it again would only cost time on every order. A test holds both
    answers byte for byte equal.
    """
    return {
        "order_id": view.order_id,
        "client_order_id": view.client_order_id,
        "account_id": view.account_id,
        "symbol": view.symbol,
        "side": view.side,
        "type": view.type,
        "price": _text(view.price),
        "quantity": str(view.quantity),
        "filled_quantity": str(view.filled_quantity),
        "remaining_quantity": str(view.remaining_quantity),
        "canceled_quantity": str(view.canceled_quantity),
        "average_price": _text(view.average_price),
        "status": view.status,
        "reason": view.reason,
        "time_in_force": view.time_in_force,
        "post_only": view.post_only,
        "stp": view.stp,
        "sequence": view.sequence,
        "created_at": rfc3339(view.created_at),
        "updated_at": rfc3339(view.updated_at),
        "fills": [
            {
                "trade_id": fill.trade_id,
                "price": str(fill.price),
                "quantity": str(fill.quantity),
                "liquidity": fill.liquidity,
                "sequence": fill.sequence,
            }
            for fill in view.fills
        ],
    }


class Fill(BaseModel):
    trade_id: str
    order_id: str
    symbol: str
    side: Side
    price: DecimalText
    quantity: DecimalText
    liquidity: Liquidity
    sequence: int
    timestamp: Timestamp

    @classmethod
    def of(cls, view: FillView) -> Fill:
        return cls.model_validate(
            {
                "trade_id": view.trade_id,
                "order_id": view.order_id,
                "symbol": view.symbol,
                "side": view.side,
                "price": str(view.price),
                "quantity": str(view.quantity),
                "liquidity": view.liquidity,
                "sequence": view.sequence,
                "timestamp": rfc3339(view.timestamp),
            }
        )


class CancelAll(BaseModel):
    canceled: list[str] = Field(
        description="The ids of the orders canceled.", examples=[["42", "43"]]
    )


class InstrumentOut(BaseModel):
    symbol: str
    tick_size: DecimalText
    lot_size: DecimalText
    min_quantity: DecimalText
    max_quantity: DecimalText
    price_band_pct: DecimalText | None

    @classmethod
    def of(cls, instrument: CoreInstrument) -> InstrumentOut:
        band = instrument.price_band_pct
        return cls(
            symbol=instrument.symbol,
            tick_size=str(plain(instrument.tick_size)),
            lot_size=str(plain(instrument.lot_size)),
            min_quantity=str(plain(instrument.min_quantity)),
            max_quantity=str(plain(instrument.max_quantity)),
            price_band_pct=None if band is None else str(plain(band)),
        )


Level = tuple[DecimalText, DecimalText, int]


class Book(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-USD",
                    "sequence": 42,
                    "bids": [["101.2", "3.5", 2]],
                    "asks": [["101.3", "1", 1]],
                }
            ]
        }
    )

    symbol: str
    sequence: int = Field(description="The last command applied to the book.")
    bids: list[Level] = Field(description="[price, total quantity, order count], best first.")
    asks: list[Level] = Field(description="[price, total quantity, order count], best first.")

    @classmethod
    def of(cls, view: BookView) -> Book:
        def levels(side: list[tuple[Decimal, Decimal, int]]) -> list[Level]:
            return [(str(price), str(quantity), count) for price, quantity, count in side]

        return cls(
            symbol=view.symbol,
            sequence=view.sequence,
            bids=levels(view.bids),
            asks=levels(view.asks),
        )


class Trade(BaseModel):
    trade_id: str
    price: DecimalText
    quantity: DecimalText
    taker_side: Side
    sequence: int
    timestamp: Timestamp

    @classmethod
    def of(cls, view: TradeView) -> Trade:
        return cls.model_validate(
            {
                "trade_id": view.trade_id,
                "price": str(view.price),
                "quantity": str(view.quantity),
                "taker_side": view.taker_side,
                "sequence": view.sequence,
                "timestamp": rfc3339(view.timestamp),
            }
        )


class AccountOut(BaseModel):
    account_id: str
    name: str
    role: Role
    created_at: Timestamp

    @classmethod
    def of(cls, record: AccountRecord) -> AccountOut:
        return cls.model_validate(
            {
                "account_id": record.account_id,
                "name": record.name,
                "role": record.role.value,
                "created_at": rfc3339(record.created_at),
            }
        )


class AccountCreated(AccountOut):
    api_key: str = Field(description="Shown this once: only its hash is stored.")

    @classmethod
    def created(cls, record: AccountRecord, api_key: str) -> AccountCreated:
        return cls.model_validate({**AccountOut.of(record).model_dump(), "api_key": api_key})


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    sequence: int
    mode: str
    database: str
    rate_limiter: str


# -- degradation modes and the audit trail ----------------------------------------------------


class ModeChange(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"mode": "cancel_only", "symbol": None, "reason": "exchange-wide volatility"},
                {"mode": "halted", "symbol": "BTC-USD", "reason": "bad prints on BTC-USD"},
            ]
        },
    )

    mode: Literal["normal", "post_only", "cancel_only", "read_only", "halted"]
    symbol: str | None = Field(default=None, pattern=SYMBOL_PATTERN)
    reason: str = Field(min_length=1, max_length=500)


class ModeStatus(BaseModel):
    """The modes in force: engine-wide (the stricter of the SREs' and the automatic one) and per
    symbol, why, and the state of the dependencies that drive them."""

    mode: Literal["normal", "post_only", "cancel_only", "read_only"]
    symbols: dict[str, Literal["halted"]]
    effective_reason: str | None
    manual_mode: Literal["normal", "post_only", "cancel_only", "read_only"] = Field(
        description="The mode the SREs set; the engine returns to it when the database recovers."
    )
    database: Literal["closed", "open", "half_open"] = Field(
        description="The database circuit breaker; open means the engine is read-only by itself."
    )
    rate_limiter: Literal["redis", "local_fallback", "local"] = Field(
        description="`local` on the embedded default (no Redis configured)."
    )


class AuditOut(BaseModel):
    audit_id: str
    at: str
    actor: str
    action: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str
    request_id: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            audit_id=entry.audit_id,
            at=rfc3339(entry.at),
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            before=entry.before,
            after=entry.after,
            reason=entry.reason,
            request_id=entry.request_id,
        )
