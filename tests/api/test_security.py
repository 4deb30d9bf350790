"""Isolation between accounts, roles on every route, and what errors never show."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.api.factories import Caller, assert_problem, instrument_body, order_body, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

PUBLIC_PATHS = {"/v1/instruments", "/v1/book/{symbol}", "/v1/trades/{symbol}"}


def v1_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every ``/v1/`` endpoint."""
    return sorted(
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path and route.path.startswith("/v1/")
        for method in route.methods or ()
    )


def concrete(path: str) -> str:
    return path.replace("{order_id}", "1").replace("{symbol}", "BTC-USD")


class TestRoles:
    async def test_a_trader_key_is_403_on_every_admin_route(
        self, app: FastAPI, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        admin_routes = [(m, p) for m, p in v1_routes(app) if p.startswith("/v1/admin/")]
        assert {("POST", "/v1/admin/instruments"), ("GET", "/v1/admin/accounts")} <= set(
            admin_routes
        )

        for method, path in admin_routes:
            response = await client.request(
                method, concrete(path), json=instrument_body(), headers=trader.headers
            )
            assert_problem(response, 403, "forbidden")

    async def test_an_admin_key_is_403_on_every_trading_route(
        self, app: FastAPI, client: httpx.AsyncClient, admin: Caller, symbol: str
    ) -> None:
        trading_routes = [
            (m, p)
            for m, p in v1_routes(app)
            if not p.startswith("/v1/admin/") and p not in PUBLIC_PATHS
        ]
        assert {("POST", "/v1/orders"), ("GET", "/v1/fills")} <= set(trading_routes)

        for method, path in trading_routes:
            response = await client.request(
                method, concrete(path), json=order_body(symbol), headers=admin.headers
            )
            assert_problem(response, 403, "forbidden")

    async def test_every_private_route_is_401_without_a_key(
        self, app: FastAPI, client: httpx.AsyncClient, symbol: str
    ) -> None:
        for method, path in v1_routes(app):
            if path in PUBLIC_PATHS:
                continue
            response = await client.request(method, concrete(path), json=order_body(symbol))
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "authorization",
        ["Basic dXNlcjpwYXNz", "Bearer", "me_0123456789abcdef_secret", "Bearer not-a-key"],
    )
    async def test_a_malformed_authorization_is_401(
        self, client: httpx.AsyncClient, authorization: str
    ) -> None:
        response = await client.get("/v1/orders", headers={"Authorization": authorization})

        assert_problem(response, 401, "unauthenticated")

    async def test_market_data_needs_no_key(self, client: httpx.AsyncClient, symbol: str) -> None:
        for path in sorted(PUBLIC_PATHS):
            response = await client.get(path.replace("{symbol}", symbol))
            assert response.status_code == 200, path


class TestAccountIsolation:
    async def test_another_accounts_order_is_404_exactly_like_an_unknown_one(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        theirs = await place(client, other_trader, symbol)
        requests = [
            ("GET", None),
            ("DELETE", None),
            ("PATCH", {"price": "99"}),
        ]

        for method, body in requests:
            foreign = await client.request(
                method, f"/v1/orders/{theirs['order_id']}", json=body, headers=trader.headers
            )
            unknown = await client.request(
                method, "/v1/orders/999999999", json=body, headers=trader.headers
            )
            assert_problem(foreign, 404, "not_found")
            assert foreign.json() == unknown.json()

        untouched = await client.get(
            f"/v1/orders/{theirs['order_id']}", headers=other_trader.headers
        )
        assert (untouched.json()["status"], untouched.json()["price"]) == ("new", "100")

    async def test_lists_show_only_own_orders(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        mine = await place(client, trader, symbol, client_order_id="same")
        await place(client, other_trader, symbol, client_order_id="same")

        every = await client.get("/v1/orders", headers=trader.headers)
        by_client_id = await client.get("/v1/orders?client_order_id=same", headers=trader.headers)

        assert [o["order_id"] for o in every.json()] == [mine["order_id"]]
        assert [o["order_id"] for o in by_client_id.json()] == [mine["order_id"]]

    async def test_the_kill_switch_cancels_only_own_orders(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol)

        response = await client.delete(f"/v1/orders?symbol={symbol}", headers=trader.headers)

        assert response.json() == {"canceled": []}


class TestSecretsAreNeverEchoed:
    async def test_an_unknown_key_is_not_in_the_answer(self, client: httpx.AsyncClient) -> None:
        key = "me_0123456789abcdef_" + "s" * 43

        response = await client.get("/v1/orders", headers={"Authorization": f"Bearer {key}"})

        assert key not in response.text
        assert "sss" not in response.text

    async def test_a_key_pasted_into_a_field_is_not_in_the_answer(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        response = await client.post(
            "/v1/orders",
            json=order_body(symbol, client_order_id=trader.api_key, note=trader.api_key),
            headers=trader.headers,
        )

        assert_problem(response, 422, "validation_error")
        assert trader.api_key not in response.text
