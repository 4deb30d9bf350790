"""``GET /v1/fills``."""

from __future__ import annotations

import httpx
import pytest

from matching_engine.service import EngineService
from tests.api.conftest import BACKENDS
from tests.api.factories import Caller, assert_problem, create_instrument, place
from tests.api.test_orders import RFC3339_NS

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestListFills:
    async def test_it_lists_own_fills_newest_first(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        maker = await place(client, trader, symbol, side="sell", price="100", quantity="2")
        first = await place(client, other_trader, symbol, side="buy", price="100", quantity="0.5")
        second = await place(client, other_trader, symbol, side="buy", price="100", quantity="1")

        response = await client.get("/v1/fills", headers=trader.headers)

        assert response.status_code == 200
        fills = response.json()
        assert [f["quantity"] for f in fills] == ["1", "0.5"]
        newest = fills[0]
        assert newest["trade_id"] == second["fills"][0]["trade_id"]
        assert newest["order_id"] == maker["order_id"]
        assert (newest["symbol"], newest["side"], newest["price"]) == (symbol, "sell", "100")
        assert newest["liquidity"] == "maker"
        assert newest["sequence"] == second["sequence"]
        assert RFC3339_NS.match(newest["timestamp"])
        assert fills[1]["trade_id"] == first["fills"][0]["trade_id"]

    async def test_the_taker_sees_its_own_side_of_the_trade(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, trader, symbol, side="sell", price="100", quantity="1")
        taker = await place(client, other_trader, symbol, side="buy", price="100", quantity="1")

        response = await client.get("/v1/fills", headers=other_trader.headers)

        [fill] = response.json()
        assert (fill["order_id"], fill["side"], fill["liquidity"]) == (
            taker["order_id"],
            "buy",
            "taker",
        )

    async def test_symbol_and_limit_filter(
        self,
        client: httpx.AsyncClient,
        service: EngineService,
        trader: Caller,
        other_trader: Caller,
        symbol: str,
    ) -> None:
        other_symbol = await create_instrument(service)
        for book in (symbol, symbol, other_symbol):
            await place(client, trader, book, side="sell", price="100", quantity="1")
            await place(client, other_trader, book, side="buy", price="100", quantity="1")

        by_symbol = await client.get(f"/v1/fills?symbol={other_symbol}", headers=trader.headers)
        limited = await client.get("/v1/fills?limit=2", headers=trader.headers)

        assert [f["symbol"] for f in by_symbol.json()] == [other_symbol]
        assert len(limited.json()) == 2

    async def test_another_accounts_fills_are_not_listed(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="100", quantity="1")
        await place(client, other_trader, symbol, side="buy", price="100", quantity="1", stp="none")

        response = await client.get("/v1/fills", headers=trader.headers)

        assert response.json() == []

    @pytest.mark.parametrize("query", ["limit=1001", "limit=0"])
    async def test_a_bad_limit_is_422_validation_error(
        self, client: httpx.AsyncClient, trader: Caller, query: str
    ) -> None:
        response = await client.get(f"/v1/fills?{query}", headers=trader.headers)

        assert_problem(response, 422, "validation_error")

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/fills")

        assert_problem(response, 401, "unauthenticated")

    async def test_an_admin_key_is_403(self, client: httpx.AsyncClient, admin: Caller) -> None:
        response = await client.get("/v1/fills", headers=admin.headers)

        assert_problem(response, 403, "forbidden")
