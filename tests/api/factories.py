"""Small builders for API tests: callers with keys, instruments, request bodies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from matching_engine.accounts import Role
from matching_engine.core import Instrument
from matching_engine.service import EngineService


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def create_caller(service: EngineService, role: Role = Role.TRADER) -> Caller:
    principal, api_key = await service.accounts.create(f"{role}-{secrets.token_hex(3)}", role)
    return Caller(principal.account_id, api_key)


async def create_trader(service: EngineService) -> Caller:
    return await create_caller(service, Role.TRADER)


async def create_admin(service: EngineService) -> Caller:
    return await create_caller(service, Role.ADMIN)


def unique_symbol() -> str:
    """A symbol no other test uses, so each test has a book of its own."""
    return f"T{secrets.token_hex(4).upper()}-USD"


def instrument_body(symbol: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": symbol or unique_symbol(),
        "tick_size": "0.01",
        "lot_size": "0.001",
        "min_quantity": "0.001",
        "max_quantity": "1000",
        "price_band_pct": None,
    }
    body.update(overrides)
    return body


async def create_instrument(service: EngineService, **overrides: Any) -> str:
    """Add an instrument (tick 0.01, lot 0.001 unless overridden); return its symbol."""
    body = instrument_body(**overrides)
    band = body["price_band_pct"]
    instrument = Instrument(
        symbol=body["symbol"],
        tick_size=Decimal(body["tick_size"]),
        lot_size=Decimal(body["lot_size"]),
        min_quantity=Decimal(body["min_quantity"]),
        max_quantity=Decimal(body["max_quantity"]),
        price_band_pct=None if band is None else Decimal(band),
    )
    await service.add_instrument(instrument, actor="test")
    return instrument.symbol


def order_body(symbol: str, /, **overrides: Any) -> dict[str, Any]:
    """A limit gtc buy of 1 at 100 unless overridden; ``None`` drops a field."""
    body: dict[str, Any] = {
        "symbol": symbol,
        "side": "buy",
        "type": "limit",
        "price": "100",
        "quantity": "1",
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not None}


async def place(
    client: httpx.AsyncClient, caller: Caller, symbol: str, /, **overrides: Any
) -> dict[str, Any]:
    """Place an order that must be accepted (201); return its JSON."""
    response = await client.post(
        "/v1/orders", json=order_body(symbol, **overrides), headers=caller.headers
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert set(problem) == {"type", "title", "status", "detail", "code"}
    assert problem["status"] == status
    assert problem["code"] == code
    return problem
