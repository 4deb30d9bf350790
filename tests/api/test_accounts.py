"""``POST /v1/admin/accounts`` and ``GET /v1/admin/accounts``."""

from __future__ import annotations

import httpx
import pytest

from tests.api.factories import Caller, assert_problem
from tests.api.test_orders import RFC3339_NS

pytestmark = pytest.mark.asyncio(loop_scope="session")


class TestCreateAccount:
    async def test_an_admin_creates_a_trader_whose_key_works_at_once(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        response = await client.post(
            "/v1/admin/accounts", json={"name": "desk-1", "role": "trader"}, headers=admin.headers
        )

        assert response.status_code == 201
        account = response.json()
        assert set(account) == {"account_id", "name", "role", "api_key", "created_at"}
        assert (account["name"], account["role"]) == ("desk-1", "trader")
        assert RFC3339_NS.match(account["created_at"])
        orders = await client.get(
            "/v1/orders", headers={"Authorization": f"Bearer {account['api_key']}"}
        )
        assert orders.status_code == 200

    async def test_an_admin_creates_an_admin(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        response = await client.post(
            "/v1/admin/accounts", json={"name": "sre", "role": "admin"}, headers=admin.headers
        )

        assert response.status_code == 201
        key = response.json()["api_key"]
        listed = await client.get("/v1/admin/accounts", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"name": "x", "role": "owner"}, id="unknown-role"),
            pytest.param({"name": "", "role": "trader"}, id="empty-name"),
            pytest.param({"name": "x" * 201, "role": "trader"}, id="long-name"),
            pytest.param({"role": "trader"}, id="no-name"),
        ],
    )
    async def test_an_invalid_body_is_422_validation_error(
        self, client: httpx.AsyncClient, admin: Caller, body: dict[str, str]
    ) -> None:
        response = await client.post("/v1/admin/accounts", json=body, headers=admin.headers)

        assert_problem(response, 422, "validation_error")

    async def test_a_trader_key_is_403(self, client: httpx.AsyncClient, trader: Caller) -> None:
        response = await client.post(
            "/v1/admin/accounts", json={"name": "x", "role": "admin"}, headers=trader.headers
        )

        assert_problem(response, 403, "forbidden")


class TestListAccounts:
    async def test_it_lists_accounts_newest_first_without_keys(
        self, client: httpx.AsyncClient, admin: Caller, trader: Caller
    ) -> None:
        created = await client.post(
            "/v1/admin/accounts", json={"name": "newest", "role": "trader"}, headers=admin.headers
        )

        response = await client.get("/v1/admin/accounts", headers=admin.headers)

        assert response.status_code == 200
        accounts = response.json()
        assert accounts[0]["account_id"] == created.json()["account_id"]
        assert {trader.account_id, admin.account_id} <= {a["account_id"] for a in accounts}
        assert all(set(a) == {"account_id", "name", "role", "created_at"} for a in accounts)
        assert created.json()["api_key"] not in response.text

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/admin/accounts")

        assert_problem(response, 401, "unauthenticated")
