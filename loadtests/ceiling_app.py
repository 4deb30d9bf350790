"""The HTTP ceiling: the least a FastAPI app can do for an order, to measure the engine against.

One ``POST /v1/orders`` that parses a pydantic order model like the engine's (symbol, side, type,
price and quantity as strings, and the optional fields) and answers 201 with an order body of the
engine's shape, serialized by its response model: no authentication, no rate limit, no journal,
no book. ``GET /livez`` tells that it is up. ``loadtests.bench_http`` serves it like the engine,
with one uvicorn worker, uvloop and httptools, without an access log::

    uvicorn loadtests.ceiling_app:app --host 127.0.0.1 --port 8001 --workers 1 \\
        --loop uvloop --http httptools --no-access-log --log-level warning
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

__all__ = ["OrderIn", "OrderOut", "app"]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: str | None = None
    quantity: str
    time_in_force: Literal["gtc", "ioc", "fok"] | None = None
    post_only: bool = False
    client_order_id: str | None = None
    stp: Literal["cancel_newest", "cancel_oldest", "cancel_both", "none"] = "cancel_newest"


class OrderFill(BaseModel):
    trade_id: str
    price: str
    quantity: str
    liquidity: Literal["maker", "taker"]
    sequence: int


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str | None
    account_id: str
    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: str | None
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    canceled_quantity: str
    average_price: str | None
    status: str
    reason: str | None
    time_in_force: str
    post_only: bool
    stp: str
    sequence: int
    created_at: str
    updated_at: str
    fills: list[OrderFill]


app = FastAPI(title="ceiling")
_sequence = itertools.count(1)


def _rfc3339(ns: int) -> str:
    seconds, nanoseconds = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanoseconds:09d}Z"


@app.post("/v1/orders", status_code=201, response_model=OrderOut)
async def place_order(body: OrderIn) -> OrderOut:
    sequence = next(_sequence)
    now = _rfc3339(time.time_ns())
    return OrderOut.model_validate(
        {
            "order_id": str(sequence),
            "client_order_id": body.client_order_id,
            "account_id": "acc_0000000000000000",
            "symbol": body.symbol,
            "side": body.side,
            "type": body.type,
            "price": body.price,
            "quantity": body.quantity,
            "filled_quantity": "0",
            "remaining_quantity": body.quantity,
            "canceled_quantity": "0",
            "average_price": None,
            "status": "new",
            "reason": None,
            "time_in_force": body.time_in_force or ("gtc" if body.type == "limit" else "ioc"),
            "post_only": body.post_only,
            "stp": body.stp,
            "sequence": sequence,
            "created_at": now,
            "updated_at": now,
            "fills": [],
        }
    )


@app.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}
