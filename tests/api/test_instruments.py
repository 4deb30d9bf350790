"""``POST /v1/admin/instruments`` and ``GET /v1/instruments``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.factories import Caller, assert_problem, instrument_body, unique_symbol

pytestmark = pytest.mark.asyncio(loop_scope="session")


class TestAddInstrument:
    async def test_an_admin_adds_an_instrument(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = instrument_body(tick_size="0.010", price_band_pct="10")

        response = await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        assert response.status_code == 201
        assert response.json() == {
            "symbol": body["symbol"],
            "tick_size": "0.01",
            "lot_size": "0.001",
            "min_quantity": "0.001",
            "max_quantity": "1000",
            "price_band_pct": "10",
        }

    async def test_the_price_band_is_optional(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = instrument_body()
        del body["price_band_pct"]

        response = await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        assert response.status_code == 201
        assert response.json()["price_band_pct"] is None

    async def test_an_existing_symbol_is_409_instrument_exists(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = instrument_body()
        await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        response = await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        assert_problem(response, 409, "instrument_exists")

    async def test_a_minimum_off_the_lot_grid_is_422_invalid_lot(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = instrument_body(min_quantity="0.0015")

        response = await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        assert_problem(response, 422, "invalid_lot")

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"symbol": "btc-usd"}, id="lowercase-symbol"),
            pytest.param({"symbol": "ABCDEFGHIJKLM"}, id="long-symbol"),
            pytest.param({"tick_size": 0.01}, id="tick-as-number"),
            pytest.param({"min_quantity": "2000"}, id="min-over-max"),
            pytest.param({"tick_size": "0"}, id="zero-tick"),
            pytest.param({"venue": "x"}, id="unknown-field"),
        ],
    )
    async def test_an_invalid_instrument_is_422_validation_error(
        self, client: httpx.AsyncClient, admin: Caller, overrides: dict[str, Any]
    ) -> None:
        body = instrument_body(**overrides)

        response = await client.post("/v1/admin/instruments", json=body, headers=admin.headers)

        assert_problem(response, 422, "validation_error")

    async def test_a_trader_key_is_403(self, client: httpx.AsyncClient, trader: Caller) -> None:
        response = await client.post(
            "/v1/admin/instruments", json=instrument_body(), headers=trader.headers
        )

        assert_problem(response, 403, "forbidden")

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/admin/instruments", json=instrument_body())

        assert_problem(response, 401, "unauthenticated")


class TestListInstruments:
    async def test_it_lists_instruments_without_a_key(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        symbol = unique_symbol()
        await client.post(
            "/v1/admin/instruments", json=instrument_body(symbol), headers=admin.headers
        )

        response = await client.get("/v1/instruments")

        assert response.status_code == 200
        listed = {instrument["symbol"]: instrument for instrument in response.json()}
        assert listed[symbol]["tick_size"] == "0.01"
