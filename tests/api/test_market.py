"""Public market data: ``GET /v1/book/{symbol}`` and ``GET /v1/trades/{symbol}``."""

from __future__ import annotations

import httpx
import pytest

from tests.api.factories import Caller, assert_problem, place
from tests.api.test_orders import RFC3339_NS

pytestmark = pytest.mark.asyncio(loop_scope="session")


class TestGetBook:
    async def test_it_aggregates_levels_best_first_without_a_key(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        await place(client, trader, symbol, side="buy", price="100", quantity="1")
        await place(client, trader, symbol, side="buy", price="100", quantity="2.5")
        await place(client, trader, symbol, side="buy", price="101.2", quantity="1")
        last = await place(client, trader, symbol, side="sell", price="101.3", quantity="1")

        response = await client.get(f"/v1/book/{symbol}")

        assert response.status_code == 200
        assert response.json() == {
            "symbol": symbol,
            "sequence": last["sequence"],
            "bids": [["101.2", "1", 1], ["100", "3.5", 2]],
            "asks": [["101.3", "1", 1]],
        }

    async def test_depth_limits_the_levels_per_side(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        for price in ("99", "100", "98"):
            await place(client, trader, symbol, side="buy", price=price)

        response = await client.get(f"/v1/book/{symbol}?depth=2")

        assert [level[0] for level in response.json()["bids"]] == ["100", "99"]

    @pytest.mark.parametrize("depth", ["1001", "0", "-1"])
    async def test_a_bad_depth_is_422_validation_error(
        self, client: httpx.AsyncClient, symbol: str, depth: str
    ) -> None:
        response = await client.get(f"/v1/book/{symbol}?depth={depth}")

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize("unknown", ["NOPE-USD", "btc-usd"])
    async def test_an_unknown_symbol_is_404(self, client: httpx.AsyncClient, unknown: str) -> None:
        response = await client.get(f"/v1/book/{unknown}")

        assert_problem(response, 404, "not_found")


class TestListTrades:
    async def test_it_lists_trades_newest_first_without_a_key(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, trader, symbol, side="sell", price="100", quantity="1")
        await place(client, trader, symbol, side="sell", price="101", quantity="1")
        first = await place(client, other_trader, symbol, side="buy", price="100", quantity="0.5")
        second = await place(client, other_trader, symbol, side="buy", price="101", quantity="1.5")

        response = await client.get(f"/v1/trades/{symbol}")

        assert response.status_code == 200
        trades = response.json()
        assert [(t["price"], t["quantity"]) for t in trades] == [
            ("101", "1"),
            ("100", "0.5"),
            ("100", "0.5"),
        ]
        assert [t["trade_id"] for t in trades] == [
            *(f["trade_id"] for f in reversed(second["fills"])),
            first["fills"][0]["trade_id"],
        ]
        assert {t["taker_side"] for t in trades} == {"buy"}
        assert trades[0]["sequence"] == second["sequence"]
        assert all(RFC3339_NS.match(t["timestamp"]) for t in trades)

    async def test_limit_caps_the_list(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, trader, symbol, side="sell", price="100", quantity="3")
        for _ in range(3):
            await place(client, other_trader, symbol, side="buy", price="100", quantity="1")

        response = await client.get(f"/v1/trades/{symbol}?limit=2")

        assert len(response.json()) == 2

    async def test_a_limit_over_1000_is_422_validation_error(
        self, client: httpx.AsyncClient, symbol: str
    ) -> None:
        response = await client.get(f"/v1/trades/{symbol}?limit=1001")

        assert_problem(response, 422, "validation_error")

    async def test_an_unknown_symbol_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/trades/NOPE-USD")

        assert_problem(response, 404, "not_found")
