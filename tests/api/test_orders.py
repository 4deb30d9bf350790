"""``/v1/orders``: one class per endpoint, one test per scenario of the contract."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

from matching_engine.service import EngineService
from tests.api.conftest import BACKENDS
from tests.api.factories import (
    Caller,
    assert_problem,
    create_instrument,
    order_body,
    place,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

RFC3339_NS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")


def assert_conserved(order: dict[str, object]) -> None:
    parts = ("filled_quantity", "remaining_quantity", "canceled_quantity")
    assert sum(Decimal(str(order[part])) for part in parts) == Decimal(str(order["quantity"]))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestPlaceOrder:
    async def test_a_limit_order_rests_and_answers_201(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        response = await client.post(
            "/v1/orders",
            json=order_body(symbol, price="101.25", quantity="1.5", client_order_id="abc-1"),
            headers=trader.headers,
        )

        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        order = response.json()
        assert order["order_id"]
        assert order["client_order_id"] == "abc-1"
        assert order["account_id"] == trader.account_id
        assert order["symbol"] == symbol
        assert (order["side"], order["type"]) == ("buy", "limit")
        assert (order["price"], order["quantity"]) == ("101.25", "1.5")
        assert order["filled_quantity"] == "0"
        assert order["remaining_quantity"] == "1.5"
        assert order["canceled_quantity"] == "0"
        assert order["average_price"] is None
        assert (order["status"], order["reason"]) == ("new", None)
        assert (order["time_in_force"], order["post_only"], order["stp"]) == (
            "gtc",
            False,
            "cancel_newest",
        )
        assert isinstance(order["sequence"], int)
        assert RFC3339_NS.match(order["created_at"])
        assert RFC3339_NS.match(order["updated_at"])
        assert order["fills"] == []

    async def test_a_market_order_defaults_to_ioc_and_is_canceled_when_the_book_runs_dry(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="100", quantity="0.4")

        order = await place(client, trader, symbol, type="market", price=None, quantity="1")

        assert order["time_in_force"] == "ioc"
        assert order["price"] is None
        assert (order["status"], order["reason"]) == ("canceled", "no_liquidity")
        assert (order["filled_quantity"], order["canceled_quantity"]) == ("0.4", "0.6")
        assert order["remaining_quantity"] == "0"
        assert_conserved(order)

    async def test_a_crossing_order_trades_at_the_makers_prices_in_execution_order(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="101", quantity="1")
        await place(client, other_trader, symbol, side="sell", price="100.5", quantity="1")
        await place(client, other_trader, symbol, side="sell", price="100.5", quantity="1")

        order = await place(client, trader, symbol, side="buy", price="101", quantity="3")

        assert order["status"] == "filled"
        assert [(f["price"], f["quantity"]) for f in order["fills"]] == [
            ("100.5", "1"),
            ("100.5", "1"),
            ("101", "1"),
        ]
        assert {f["liquidity"] for f in order["fills"]} == {"taker"}
        assert {f["sequence"] for f in order["fills"]} == {order["sequence"]}
        assert len({f["trade_id"] for f in order["fills"]}) == 3
        assert order["average_price"] == "100.66666667"
        assert_conserved(order)

    async def test_the_average_price_is_rounded_half_even_to_8_places(
        self,
        client: httpx.AsyncClient,
        service: EngineService,
        trader: Caller,
        other_trader: Caller,
    ) -> None:
        symbol = await create_instrument(service, tick_size="0.00000001")
        await place(client, other_trader, symbol, side="sell", price="1.00000000", quantity="1")
        await place(client, other_trader, symbol, side="sell", price="1.00000001", quantity="1")

        order = await place(client, trader, symbol, side="buy", price="1.00000001", quantity="2")

        # Exactly 1.000000005: half-even keeps the even 1.00000000, half-up would give ...01.
        assert order["average_price"] == "1"

    async def test_an_ioc_remainder_is_canceled_and_quantities_add_up(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="100", quantity="0.25")

        order = await place(client, trader, symbol, time_in_force="ioc", quantity="1")

        assert order["reason"] == "ioc_remainder"
        assert order["filled_quantity"] == "0.25"
        assert order["canceled_quantity"] == "0.75"
        assert order["remaining_quantity"] == "0"
        assert_conserved(order)

    async def test_a_post_only_order_that_would_cross_is_rejected(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="100", quantity="1")

        order = await place(client, trader, symbol, price="100", post_only=True)

        assert (order["status"], order["reason"]) == ("rejected", "post_only_would_cross")
        assert order["fills"] == []
        assert_conserved(order)

    async def test_an_idempotent_retry_answers_200_with_the_original_order(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        body = order_body(symbol, client_order_id="retry-1")
        first = await client.post("/v1/orders", json=body, headers=trader.headers)

        retry = await client.post("/v1/orders", json=body, headers=trader.headers)

        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        assert retry.status_code == 200
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()

    async def test_a_reused_client_order_id_with_other_parameters_is_a_409_conflict(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        await place(client, trader, symbol, client_order_id="reused", price="100")

        response = await client.post(
            "/v1/orders",
            json=order_body(symbol, client_order_id="reused", price="99"),
            headers=trader.headers,
        )

        assert_problem(response, 409, "client_order_id_conflict")

    async def test_the_same_client_order_id_in_two_accounts_is_two_orders(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        mine = await place(client, trader, symbol, client_order_id="shared", price="90")
        theirs = await place(client, other_trader, symbol, client_order_id="shared", price="90")

        assert mine["order_id"] != theirs["order_id"]

    async def test_an_unknown_symbol_is_422_unknown_symbol(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body("NOPE-USD"), headers=trader.headers
        )

        assert_problem(response, 422, "unknown_symbol")

    async def test_a_price_off_the_tick_grid_is_422_invalid_tick(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body(symbol, price="100.005"), headers=trader.headers
        )

        assert_problem(response, 422, "invalid_tick")

    async def test_a_quantity_off_the_lot_grid_is_422_invalid_lot(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body(symbol, quantity="0.0005"), headers=trader.headers
        )

        assert_problem(response, 422, "invalid_lot")

    async def test_a_quantity_over_the_maximum_is_422_quantity_out_of_range(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body(symbol, quantity="1000.001"), headers=trader.headers
        )

        assert_problem(response, 422, "quantity_out_of_range")

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param(
                {"type": "market", "price": None, "time_in_force": "gtc"}, id="market-gtc"
            ),
            pytest.param({"type": "market", "price": "100"}, id="market-with-price"),
            pytest.param({"price": None}, id="limit-without-price"),
            pytest.param({"time_in_force": "ioc", "post_only": True}, id="post-only-ioc"),
            pytest.param({"price": "0"}, id="zero-price"),
            pytest.param({"quantity": "0"}, id="zero-quantity"),
        ],
    )
    async def test_an_impossible_combination_is_422_validation_error(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        overrides: dict[str, object],
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body(symbol, **overrides), headers=trader.headers
        )

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"price": 100.25}, id="price-as-number"),
            pytest.param({"quantity": 1}, id="quantity-as-number"),
            pytest.param({"price": "1e2"}, id="exponent"),
            pytest.param({"price": "-1"}, id="negative"),
            pytest.param({"quantity": " 1"}, id="padded"),
            pytest.param({"side": "BUY"}, id="side-case"),
            pytest.param({"stp": "cancel_all"}, id="unknown-stp"),
            pytest.param({"post_only": "true"}, id="post-only-as-string"),
            pytest.param({"symbol": "btc-usd"}, id="symbol-pattern"),
            pytest.param({"client_order_id": "a b"}, id="client-order-id-pattern"),
            pytest.param({"client_order_id": "x" * 65}, id="client-order-id-length"),
            pytest.param({"leverage": "10"}, id="unknown-field"),
        ],
    )
    async def test_a_body_off_the_schema_is_422_validation_error(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        overrides: dict[str, object],
    ) -> None:
        response = await client.post(
            "/v1/orders", json=order_body(symbol, **overrides), headers=trader.headers
        )

        problem = assert_problem(response, 422, "validation_error")
        assert problem["detail"].startswith("body.")

    async def test_a_rejected_request_creates_nothing(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        await client.post("/v1/orders", json=order_body(symbol, price=100), headers=trader.headers)

        listed = await client.get("/v1/orders", headers=trader.headers)

        assert listed.json() == []

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient, symbol: str) -> None:
        response = await client.post("/v1/orders", json=order_body(symbol))

        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_an_unknown_key_is_401(self, client: httpx.AsyncClient, symbol: str) -> None:
        response = await client.post(
            "/v1/orders",
            json=order_body(symbol),
            headers={"Authorization": "Bearer me_0123456789abcdef_" + "x" * 43},
        )

        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_an_admin_key_cannot_trade(
        self, client: httpx.AsyncClient, admin: Caller, symbol: str
    ) -> None:
        response = await client.post("/v1/orders", json=order_body(symbol), headers=admin.headers)

        assert_problem(response, 403, "forbidden")


class TestGetOrder:
    async def test_it_answers_the_order_with_its_fills(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        maker = await place(client, trader, symbol, side="buy", price="100", quantity="1")
        await place(client, other_trader, symbol, side="sell", price="100", quantity="0.25")
        await place(client, other_trader, symbol, side="sell", price="100", quantity="0.5")

        response = await client.get(f"/v1/orders/{maker['order_id']}", headers=trader.headers)

        assert response.status_code == 200
        order = response.json()
        assert order["status"] == "partially_filled"
        assert (order["filled_quantity"], order["remaining_quantity"]) == ("0.75", "0.25")
        assert [(f["quantity"], f["liquidity"]) for f in order["fills"]] == [
            ("0.25", "maker"),
            ("0.5", "maker"),
        ]
        assert order["fills"][0]["sequence"] < order["fills"][1]["sequence"]
        assert order["average_price"] == "100"
        assert order["sequence"] == maker["sequence"]
        assert order["updated_at"] > order["created_at"]

    @pytest.mark.parametrize("order_id", ["999999999", "not-a-number", "0"])
    async def test_an_unknown_id_is_404(
        self, client: httpx.AsyncClient, trader: Caller, order_id: str
    ) -> None:
        response = await client.get(f"/v1/orders/{order_id}", headers=trader.headers)

        assert_problem(response, 404, "not_found")

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/orders/1")

        assert_problem(response, 401, "unauthenticated")


class TestListOrders:
    async def test_it_lists_own_orders_newest_first(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        placed = [await place(client, trader, symbol, price=str(90 + n)) for n in range(3)]

        response = await client.get("/v1/orders", headers=trader.headers)

        assert response.status_code == 200
        assert [o["order_id"] for o in response.json()] == [o["order_id"] for o in reversed(placed)]

    async def test_status_open_and_closed_split_the_orders(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        resting = await place(client, trader, symbol)
        canceled = await place(client, trader, symbol, price="95")
        await client.delete(f"/v1/orders/{canceled['order_id']}", headers=trader.headers)

        open_ = await client.get("/v1/orders?status=open", headers=trader.headers)
        closed = await client.get("/v1/orders?status=closed", headers=trader.headers)
        all_ = await client.get("/v1/orders", headers=trader.headers)

        assert [o["order_id"] for o in open_.json()] == [resting["order_id"]]
        assert [o["order_id"] for o in closed.json()] == [canceled["order_id"]]
        assert len(all_.json()) == 2

    async def test_symbol_and_client_order_id_filter(
        self, client: httpx.AsyncClient, service: EngineService, trader: Caller, symbol: str
    ) -> None:
        other_symbol = await create_instrument(service)
        await place(client, trader, symbol, client_order_id="one")
        wanted = await place(client, trader, symbol, client_order_id="two")
        elsewhere = await place(client, trader, other_symbol)

        by_symbol = await client.get(f"/v1/orders?symbol={other_symbol}", headers=trader.headers)
        by_client_id = await client.get("/v1/orders?client_order_id=two", headers=trader.headers)

        assert [o["order_id"] for o in by_symbol.json()] == [elsewhere["order_id"]]
        assert [o["order_id"] for o in by_client_id.json()] == [wanted["order_id"]]

    async def test_limit_caps_the_list(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        for _ in range(3):
            await place(client, trader, symbol)

        response = await client.get("/v1/orders?limit=2", headers=trader.headers)

        assert len(response.json()) == 2

    @pytest.mark.parametrize(
        "query", ["limit=1001", "limit=0", "limit=many", "status=pending", "symbol=btc"]
    )
    async def test_a_bad_query_is_422_validation_error(
        self, client: httpx.AsyncClient, trader: Caller, query: str
    ) -> None:
        response = await client.get(f"/v1/orders?{query}", headers=trader.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert problem["detail"].startswith("query.")

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/orders")

        assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestCancelOrder:
    async def test_it_cancels_an_open_order(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol, quantity="2")

        response = await client.delete(f"/v1/orders/{order['order_id']}", headers=trader.headers)

        assert response.status_code == 200
        canceled = response.json()
        assert (canceled["status"], canceled["reason"]) == ("canceled", "user_canceled")
        assert (canceled["remaining_quantity"], canceled["canceled_quantity"]) == ("0", "2")
        assert_conserved(canceled)
        book = await client.get(f"/v1/book/{symbol}")
        assert book.json()["bids"] == []

    async def test_a_canceled_order_is_409_order_not_open(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol)
        await client.delete(f"/v1/orders/{order['order_id']}", headers=trader.headers)

        response = await client.delete(f"/v1/orders/{order['order_id']}", headers=trader.headers)

        assert_problem(response, 409, "order_not_open")

    async def test_a_filled_order_is_409_order_not_open(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol)
        await place(client, other_trader, symbol, side="sell")

        response = await client.delete(f"/v1/orders/{order['order_id']}", headers=trader.headers)

        assert_problem(response, 409, "order_not_open")

    async def test_an_unknown_id_is_404(self, client: httpx.AsyncClient, trader: Caller) -> None:
        response = await client.delete("/v1/orders/999999999", headers=trader.headers)

        assert_problem(response, 404, "not_found")


class TestCancelAll:
    async def test_it_cancels_every_own_open_order(
        self,
        client: httpx.AsyncClient,
        service: EngineService,
        trader: Caller,
        other_trader: Caller,
        symbol: str,
    ) -> None:
        other_symbol = await create_instrument(service)
        mine = [await place(client, trader, symbol), await place(client, trader, other_symbol)]
        theirs = await place(client, other_trader, symbol)

        response = await client.delete("/v1/orders", headers=trader.headers)

        assert response.status_code == 200
        assert sorted(response.json()["canceled"]) == sorted(o["order_id"] for o in mine)
        still_open = await client.get(
            f"/v1/orders/{theirs['order_id']}", headers=other_trader.headers
        )
        assert still_open.json()["status"] == "new"

    async def test_a_symbol_limits_it_to_that_symbol(
        self, client: httpx.AsyncClient, service: EngineService, trader: Caller, symbol: str
    ) -> None:
        other_symbol = await create_instrument(service)
        here = await place(client, trader, symbol)
        there = await place(client, trader, other_symbol)

        response = await client.delete(f"/v1/orders?symbol={symbol}", headers=trader.headers)

        assert response.json() == {"canceled": [here["order_id"]]}
        kept = await client.get(f"/v1/orders/{there['order_id']}", headers=trader.headers)
        assert kept.json()["status"] == "new"

    async def test_with_nothing_open_it_cancels_nothing(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.delete("/v1/orders", headers=trader.headers)

        assert response.status_code == 200
        assert response.json() == {"canceled": []}

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/v1/orders")

        assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestAmendOrder:
    async def test_lowering_the_quantity_keeps_time_priority(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        first = await place(client, trader, symbol, quantity="2")
        await place(client, trader, symbol, quantity="1")

        response = await client.patch(
            f"/v1/orders/{first['order_id']}", json={"quantity": "1.5"}, headers=trader.headers
        )
        taker = await place(client, other_trader, symbol, side="sell", quantity="1")

        assert response.status_code == 200
        assert response.json()["quantity"] == "1.5"
        assert response.json()["remaining_quantity"] == "1.5"
        maker = await client.get(f"/v1/orders/{first['order_id']}", headers=trader.headers)
        assert maker.json()["filled_quantity"] == "1"
        assert taker["status"] == "filled"

    async def test_a_new_price_that_crosses_matches_at_once(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        await place(client, other_trader, symbol, side="sell", price="101", quantity="1")
        order = await place(client, trader, symbol, price="100", quantity="1")

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"price": "101"}, headers=trader.headers
        )

        assert response.status_code == 200
        amended = response.json()
        assert (amended["price"], amended["status"]) == ("101", "filled")
        assert [f["price"] for f in amended["fills"]] == ["101"]

    async def test_an_amend_that_changes_nothing_answers_200(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol, price="100", quantity="1")

        response = await client.patch(
            f"/v1/orders/{order['order_id']}",
            json={"price": "100", "quantity": "1"},
            headers=trader.headers,
        )

        assert response.status_code == 200
        assert (response.json()["price"], response.json()["quantity"]) == ("100", "1")

    @pytest.mark.parametrize("body", [{}, {"price": None, "quantity": None}])
    async def test_an_empty_amend_is_422_invalid_amend(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str, body: dict[str, None]
    ) -> None:
        order = await place(client, trader, symbol)

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json=body, headers=trader.headers
        )

        assert_problem(response, 422, "invalid_amend")

    async def test_a_quantity_not_above_the_filled_one_is_422_invalid_amend(
        self, client: httpx.AsyncClient, trader: Caller, other_trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol, quantity="2")
        await place(client, other_trader, symbol, side="sell", quantity="1")

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"quantity": "1"}, headers=trader.headers
        )

        assert_problem(response, 422, "invalid_amend")

    async def test_a_price_off_the_tick_grid_is_422_invalid_tick(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol)

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"price": "100.001"}, headers=trader.headers
        )

        assert_problem(response, 422, "invalid_tick")

    async def test_a_price_as_a_json_number_is_422_validation_error(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol)

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"price": 101}, headers=trader.headers
        )

        assert_problem(response, 422, "validation_error")

    async def test_a_canceled_order_is_409_order_not_open(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        order = await place(client, trader, symbol)
        await client.delete(f"/v1/orders/{order['order_id']}", headers=trader.headers)

        response = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"price": "99"}, headers=trader.headers
        )

        assert_problem(response, 409, "order_not_open")

    async def test_an_unknown_id_is_404(self, client: httpx.AsyncClient, trader: Caller) -> None:
        response = await client.patch(
            "/v1/orders/999999999", json={"price": "99"}, headers=trader.headers
        )

        assert_problem(response, 404, "not_found")
