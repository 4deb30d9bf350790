"""Degradation modes through HTTP: what each mode lets through, the SREs' controls, their audit
trail and metrics, and modes surviving a restart.

One app on a PostgreSQL database of this module's own serves every test but the restart, which
runs its own. Modes are engine-wide, so every test leaves the engine as it found it: normal,
with no symbol halted. Each test trades on symbols of its own.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from matching_engine import audit
from matching_engine.service import EngineService
from tests.api.conftest import Served
from tests.api.factories import (
    Caller,
    assert_problem,
    create_admin,
    create_instrument,
    create_trader,
    instrument_body,
    order_body,
    place,
)
from tests.resilience import appharness
from tests.resilience.appharness import (
    GENEROUS_LIMITS,
    add_instrument,
    assert_unavailable,
    client_of,
    metric,
    put_mode,
    running,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

module_pg_url = appharness.module_pg_url
fresh_pg_url = appharness.fresh_pg_url

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(
    module_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    async with running(module_pg_url, tmp_path_factory.mktemp("modes"), **GENEROUS_LIMITS) as app:
        yield app


@pytest.fixture(scope="module")
def service(served: Served) -> EngineService:
    return served.service


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(served) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(service: EngineService) -> Caller:
    return await create_admin(service)


@pytest_asyncio.fixture(loop_scope="module")
async def trader(service: EngineService) -> Caller:
    return await create_trader(service)


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def back_to_normal(
    service: EngineService, client: httpx.AsyncClient, admin: Caller
) -> AsyncIterator[None]:
    yield
    for symbol in list(service.modes.halted):
        await put_mode(client, admin, "normal", symbol, reason="test over")
    if service.modes.manual.value != "normal":
        await put_mode(client, admin, "normal", reason="test over")


@dataclass(frozen=True, slots=True)
class Book:
    """A symbol with an ask at 101 (another account's) and the trader's bid at 99."""

    symbol: str
    trader: Caller
    bid_id: str


@pytest_asyncio.fixture(loop_scope="module")
async def book(service: EngineService, client: httpx.AsyncClient, trader: Caller) -> Book:
    symbol = await create_instrument(service)
    await place(client, await create_trader(service), symbol, side="sell", price="101")
    bid = await place(client, trader, symbol, side="buy", price="99")
    return Book(symbol, trader, bid["order_id"])


async def open_orders(client: httpx.AsyncClient, book: Book) -> list[dict[str, Any]]:
    response = await client.get(
        "/v1/orders", params={"symbol": book.symbol, "status": "open"}, headers=book.trader.headers
    )
    assert response.status_code == 200, response.text
    orders: list[dict[str, Any]] = response.json()
    return orders


# -- the global modes -----------------------------------------------------------------------------

Action = Callable[[httpx.AsyncClient, Book], Awaitable[httpx.Response]]


def new_order(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    """A limit buy at 100 that is not post-only (it would rest: the ask is at 101)."""
    body = order_body(book.symbol, price="100")
    return client.post("/v1/orders", json=body, headers=book.trader.headers)


def new_post_only_order(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    body = order_body(book.symbol, price="100", post_only=True)
    return client.post("/v1/orders", json=body, headers=book.trader.headers)


def crossing_post_only_order(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    body = order_body(book.symbol, price="101", post_only=True)
    return client.post("/v1/orders", json=body, headers=book.trader.headers)


def amend(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    return client.patch(
        f"/v1/orders/{book.bid_id}", json={"price": "98"}, headers=book.trader.headers
    )


def cancel(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    return client.delete(f"/v1/orders/{book.bid_id}", headers=book.trader.headers)


def cancel_all(client: httpx.AsyncClient, book: Book) -> Awaitable[httpx.Response]:
    return client.delete("/v1/orders", params={"symbol": book.symbol}, headers=book.trader.headers)


async def attempt(
    client: httpx.AsyncClient,
    admin: Caller,
    book: Book,
    mode: str,
    action: Action,
    refusal: str | None,
) -> httpx.Response:
    """Try ``action`` in the global ``mode``: refused with 503 ``refusal`` and nothing changed,
    or (``refusal`` None) answered 2xx. Returns the response."""
    before = await open_orders(client, book)
    await put_mode(client, admin, mode)

    response = await action(client, book)

    if refusal is None:
        assert response.status_code in (200, 201), response.text
    else:
        assert_unavailable(response, refusal)
        assert await open_orders(client, book) == before
    return response


def matrix(*refusals: str | None) -> pytest.MarkDecorator:
    """Parametrize over the four global modes with what each answers (None: allowed)."""
    modes = ("normal", "post_only", "cancel_only", "read_only")
    return pytest.mark.parametrize(
        ("mode", "refusal"),
        list(zip(modes, refusals, strict=True)),
        ids=[f"{m}-{r or 'allowed'}" for m, r in zip(modes, refusals, strict=True)],
    )


class TestGlobalModes:
    @matrix(None, "post_only_mode", "cancel_only", "read_only")
    async def test_a_new_order_that_is_not_post_only(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, new_order, refusal)

        if refusal is None:
            assert response.status_code == 201
            assert response.json()["status"] == "new"

    @matrix(None, None, "cancel_only", "read_only")
    async def test_a_new_post_only_order(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, new_post_only_order, refusal)

        if refusal is None:
            assert response.status_code == 201
            assert (response.json()["status"], response.json()["post_only"]) == ("new", True)

    @matrix(None, None, "cancel_only", "read_only")
    async def test_a_post_only_order_that_would_cross_is_still_rejected(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, crossing_post_only_order, refusal)

        if refusal is None:
            assert response.status_code == 201
            order = response.json()
            assert (order["status"], order["reason"]) == ("rejected", "post_only_would_cross")
            assert order["fills"] == []

    @matrix(None, None, "cancel_only", "read_only")
    async def test_an_amend(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, amend, refusal)

        if refusal is None:
            assert response.status_code == 200
            assert response.json()["price"] == "98"

    @matrix(None, None, None, "read_only")
    async def test_a_cancel(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, cancel, refusal)

        if refusal is None:
            assert response.status_code == 200
            assert (response.json()["status"], response.json()["reason"]) == (
                "canceled",
                "user_canceled",
            )

    @matrix(None, None, None, "read_only")
    async def test_a_cancel_all(
        self,
        client: httpx.AsyncClient,
        admin: Caller,
        book: Book,
        mode: str,
        refusal: str | None,
    ) -> None:
        response = await attempt(client, admin, book, mode, cancel_all, refusal)

        if refusal is None:
            assert response.status_code == 200
            assert response.json() == {"canceled": [book.bid_id]}

    async def test_reads_go_on_in_read_only(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "read_only")

        own = await client.get(f"/v1/orders/{book.bid_id}", headers=book.trader.headers)
        market = await client.get(f"/v1/book/{book.symbol}")

        assert own.status_code == 200
        assert market.status_code == 200
        assert market.json()["bids"] == [["99", "1", 1]]


# -- per-symbol halts -----------------------------------------------------------------------------


class TestSymbolHalt:
    async def test_new_orders_on_the_symbol_are_503_halted(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        state = await put_mode(client, admin, "halted", book.symbol, reason="bad prints")

        assert state["mode"] == "normal"
        assert state["symbols"] == {book.symbol: "halted"}
        assert_unavailable(await new_order(client, book), "halted")
        assert_unavailable(await new_post_only_order(client, book), "halted")

    async def test_the_refusal_says_that_the_symbol_is_halted(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol, reason="bad prints")

        problem = assert_problem(await new_order(client, book), 503, "halted")

        assert book.symbol in problem["detail"]
        assert "halted" in problem["detail"]
        assert "None" not in problem["detail"]

    async def test_amends_on_the_symbol_are_503_halted(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)

        assert_unavailable(await amend(client, book), "halted")
        [bid] = await open_orders(client, book)
        assert bid["price"] == "99"

    async def test_a_cancel_on_the_symbol_is_allowed(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)

        response = await cancel(client, book)

        assert response.status_code == 200
        assert response.json()["status"] == "canceled"

    async def test_a_cancel_all_on_the_symbol_is_allowed(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)

        response = await cancel_all(client, book)

        assert response.status_code == 200
        assert response.json() == {"canceled": [book.bid_id]}

    async def test_other_symbols_trade_on(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService, book: Book
    ) -> None:
        other = await create_instrument(service)
        await put_mode(client, admin, "halted", book.symbol)

        order = await place(client, book.trader, other, price="100")
        amended = await client.patch(
            f"/v1/orders/{order['order_id']}", json={"quantity": "0.5"}, headers=book.trader.headers
        )

        assert amended.status_code == 200
        assert amended.json()["quantity"] == "0.5"

    async def test_normal_lifts_the_halt(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)

        state = await put_mode(client, admin, "normal", book.symbol, reason="prints fixed")

        assert state["symbols"] == {}
        assert (await new_order(client, book)).status_code == 201
        assert (await amend(client, book)).status_code == 200


class TestEffectiveMode:
    async def test_a_halt_is_stricter_than_a_global_post_only(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService, book: Book
    ) -> None:
        other = await create_instrument(service)
        await put_mode(client, admin, "post_only")
        await put_mode(client, admin, "halted", book.symbol)

        assert_unavailable(await new_post_only_order(client, book), "halted")
        assert_unavailable(await amend(client, book), "halted")
        elsewhere = await place(client, book.trader, other, price="100", post_only=True)
        assert elsewhere["status"] == "new"

    async def test_a_global_read_only_is_stricter_than_a_halt(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)
        await put_mode(client, admin, "read_only")

        assert_unavailable(await new_order(client, book), "read_only")
        assert_unavailable(await amend(client, book), "read_only")
        assert_unavailable(await cancel(client, book), "read_only")

    async def test_the_halt_outlives_a_global_change(
        self, client: httpx.AsyncClient, admin: Caller, book: Book
    ) -> None:
        await put_mode(client, admin, "halted", book.symbol)
        await put_mode(client, admin, "cancel_only")

        state = await put_mode(client, admin, "normal")

        assert state["symbols"] == {book.symbol: "halted"}
        assert_unavailable(await new_order(client, book), "halted")


# -- the SREs' controls ---------------------------------------------------------------------------


async def newest_audit_id(client: httpx.AsyncClient, admin: Caller) -> str:
    response = await client.get("/v1/admin/audit", params={"limit": 1}, headers=admin.headers)
    assert response.status_code == 200, response.text
    audit_id: str = response.json()[0]["audit_id"]
    return audit_id


class TestSetModeValidation:
    async def put(
        self, client: httpx.AsyncClient, admin: Caller, body: dict[str, Any]
    ) -> httpx.Response:
        """PUT the body, which must change nothing: neither a mode nor the audit trail."""
        before = (await client.get("/v1/admin/mode", headers=admin.headers)).json()
        newest = await newest_audit_id(client, admin)

        response = await client.put("/v1/admin/mode", json=body, headers=admin.headers)

        assert (await client.get("/v1/admin/mode", headers=admin.headers)).json() == before
        assert await newest_audit_id(client, admin) == newest
        return response

    @pytest.mark.parametrize("reason", [None, "", "   "], ids=["missing", "empty", "blank"])
    async def test_a_reason_is_required(
        self, client: httpx.AsyncClient, admin: Caller, reason: str | None
    ) -> None:
        body = {"mode": "cancel_only", "symbol": None, "reason": reason}

        response = await self.put(client, admin, {k: v for k, v in body.items() if v is not None})

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize("mode", ["post_only", "cancel_only", "read_only"])
    async def test_a_symbol_takes_only_halted_or_normal(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService, mode: str
    ) -> None:
        symbol = await create_instrument(service)

        response = await self.put(client, admin, {"mode": mode, "symbol": symbol, "reason": "x"})

        assert_problem(response, 422, "validation_error")

    async def test_an_unknown_symbol_is_422_unknown_symbol(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = {"mode": "halted", "symbol": "NOPE-USD", "reason": "bad prints"}

        assert_problem(await self.put(client, admin, body), 422, "unknown_symbol")

    async def test_halted_is_not_a_global_mode(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        body = {"mode": "halted", "symbol": None, "reason": "everything is on fire"}

        assert_problem(await self.put(client, admin, body), 422, "validation_error")

    async def test_an_unknown_mode_is_422(self, client: httpx.AsyncClient, admin: Caller) -> None:
        body = {"mode": "closed", "symbol": None, "reason": "weekend"}

        assert_problem(await self.put(client, admin, body), 422, "validation_error")


ADMIN_ENDPOINTS = [
    ("GET", "/v1/admin/mode"),
    ("PUT", "/v1/admin/mode"),
    ("GET", "/v1/admin/audit"),
]


class TestAdminOnly:
    @pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
    async def test_a_trader_key_is_403(
        self,
        client: httpx.AsyncClient,
        service: EngineService,
        trader: Caller,
        method: str,
        path: str,
    ) -> None:
        body = {"mode": "read_only", "symbol": None, "reason": "not mine to set"}

        response = await client.request(method, path, json=body, headers=trader.headers)

        assert_problem(response, 403, "forbidden")
        assert service.modes.manual.value == "normal"

    @pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
    async def test_no_key_is_401(
        self, client: httpx.AsyncClient, service: EngineService, method: str, path: str
    ) -> None:
        body = {"mode": "read_only", "symbol": None, "reason": "anonymous"}

        response = await client.request(method, path, json=body)

        assert_problem(response, 401, "unauthenticated")
        assert service.modes.manual.value == "normal"


class TestAuditTrail:
    async def test_admin_actions_are_listed_newest_first_with_who_what_and_why(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        ids = {name: f"{name}-{secrets.token_hex(6)}" for name in ("mode", "instrument", "account")}
        started_ns = time.time_ns()

        mode = await client.put(
            "/v1/admin/mode",
            json={"mode": "cancel_only", "symbol": None, "reason": "volatility drill"},
            headers={**admin.headers, "X-Request-ID": ids["mode"]},
        )
        instrument = await client.post(
            "/v1/admin/instruments",
            json=instrument_body(),
            headers={**admin.headers, "X-Request-ID": ids["instrument"]},
        )
        account = await client.post(
            "/v1/admin/accounts",
            json={"name": "desk-audit", "role": "trader"},
            headers={**admin.headers, "X-Request-ID": ids["account"]},
        )
        assert (mode.status_code, instrument.status_code, account.status_code) == (200, 201, 201)
        finished_ns = time.time_ns()
        symbol, account_id = instrument.json()["symbol"], account.json()["account_id"]

        response = await client.get("/v1/admin/audit", params={"limit": 3}, headers=admin.headers)

        assert response.status_code == 200
        entries = response.json()
        assert [(e["action"], e["target"], e["request_id"]) for e in entries] == [
            ("account.create", account_id, ids["account"]),
            ("instrument.add", symbol, ids["instrument"]),
            ("mode.set", None, ids["mode"]),
        ]
        assert {e["actor"] for e in entries} == {admin.account_id}
        account_entry, instrument_entry, mode_entry = entries
        assert (mode_entry["before"], mode_entry["after"]) == (
            {"mode": "normal"},
            {"mode": "cancel_only"},
        )
        assert mode_entry["reason"] == "volatility drill"
        assert instrument_entry["before"] is None
        assert instrument_entry["after"]["tick_size"] == "0.01"
        assert account_entry["before"] is None
        assert account_entry["after"] == {"name": "desk-audit", "role": "trader"}
        assert all(e["reason"] for e in entries)
        times = [rfc3339_us(e["at"]) for e in entries]
        assert times == sorted(times, reverse=True)
        assert all(started_ns // 1000 <= at <= finished_ns // 1000 + 1 for at in times)

    async def test_the_trail_is_append_only(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService
    ) -> None:
        await put_mode(client, admin, "post_only", reason="the original reason")
        await service.audit.flush()  # the entry is in the table, not only on local disk
        audit_id = await newest_audit_id(client, admin)

        with pytest.raises(DBAPIError, match="append-only"):
            async with service.database.begin() as connection:
                await connection.execute(
                    text("UPDATE admin_audit SET reason = 'rewritten' WHERE audit_id = :id"),
                    {"id": audit_id},
                )

        [entry] = (
            await client.get("/v1/admin/audit", params={"limit": 1}, headers=admin.headers)
        ).json()
        assert (entry["audit_id"], entry["reason"]) == (audit_id, "the original reason")


def rfc3339_us(value: str) -> int:
    """An RFC 3339 time as microseconds since the epoch (the precision datetime keeps)."""
    assert RFC3339.fullmatch(value), value
    whole, _, fraction = value.rstrip("Z").partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + int(fraction.ljust(6, "0")[:6])


class TestModeMetrics:
    async def test_the_global_mode_is_a_gauge(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        await put_mode(client, admin, "cancel_only")

        exposition = (await client.get("/metrics")).text

        assert 'matching_engine_mode{mode="cancel_only"} 1.0' in exposition.splitlines()
        assert metric(exposition, "matching_engine_mode", {"mode": "normal"}) == 0

        await put_mode(client, admin, "normal")
        exposition = (await client.get("/metrics")).text
        assert metric(exposition, "matching_engine_mode", {"mode": "cancel_only"}) == 0
        assert metric(exposition, "matching_engine_mode", {"mode": "normal"}) == 1

    async def test_a_halted_symbol_is_a_gauge(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService
    ) -> None:
        symbol = await create_instrument(service)
        await put_mode(client, admin, "halted", symbol)

        exposition = (await client.get("/metrics")).text

        assert metric(exposition, "matching_engine_symbol_halted", {"symbol": symbol}) == 1

    async def test_setting_it_counts_a_change(
        self, client: httpx.AsyncClient, admin: Caller
    ) -> None:
        before = await mode_changes(client, "post_only")

        await put_mode(client, admin, "post_only")

        assert await mode_changes(client, "post_only") == before + 1

    async def test_a_halt_is_not_a_change_of_the_engine_wide_mode(
        self, client: httpx.AsyncClient, admin: Caller, service: EngineService
    ) -> None:
        symbol = await create_instrument(service)
        before = await mode_changes(client, "normal")

        await put_mode(client, admin, "halted", symbol)
        await put_mode(client, admin, "normal", symbol)

        assert await mode_changes(client, "normal") == before


async def mode_changes(client: httpx.AsyncClient, to_mode: str) -> float:
    """``matching_engine_mode_changes_total`` to ``to_mode`` caused by SREs."""
    exposition = (await client.get("/metrics")).text
    labels = {"to_mode": to_mode, "cause": "sre"}
    return metric(exposition, "matching_engine_mode_changes_total", labels) or 0.0


# -- restarts -------------------------------------------------------------------------------------


class TestRestart:
    async def test_the_modes_come_back_after_a_restart(
        self, fresh_pg_url: str, tmp_path: Path
    ) -> None:
        async with running(fresh_pg_url, tmp_path, **GENEROUS_LIMITS) as first:
            admin = await create_admin(first.service)
            trader = await create_trader(first.service)
            async with client_of(first) as client:
                halted = await add_instrument(client, admin)
                lifted = await add_instrument(client, admin)
                await put_mode(client, admin, "post_only", reason="auction tomorrow")
                await put_mode(client, admin, "halted", halted, reason="bad prints")
                await put_mode(client, admin, "halted", lifted, reason="bad prints")
                await put_mode(client, admin, "normal", lifted, reason="prints fixed")
                state = (await client.get("/v1/admin/mode", headers=admin.headers)).json()

        async with (
            running(fresh_pg_url, tmp_path, **GENEROUS_LIMITS) as second,
            client_of(second) as client,
        ):
            again = (await client.get("/v1/admin/mode", headers=admin.headers)).json()
            plain = await client.post("/v1/orders", json=order_body(lifted), headers=trader.headers)
            on_halted = await client.post(
                "/v1/orders", json=order_body(halted, post_only=True), headers=trader.headers
            )
            post_only = await client.post(
                "/v1/orders", json=order_body(lifted, post_only=True), headers=trader.headers
            )

        assert again == state
        assert (again["mode"], again["symbols"]) == ("post_only", {halted: "halted"})
        assert again["effective_reason"] == "auction tomorrow"
        assert_unavailable(plain, "post_only_mode")
        assert_unavailable(on_halted, "halted")
        assert post_only.status_code == 201

    async def test_the_last_mode_set_wins_even_after_the_clock_stepped_back(
        self, fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with running(fresh_pg_url, tmp_path, **GENEROUS_LIMITS) as first:
            admin = await create_admin(first.service)
            async with client_of(first) as client:
                await put_mode(client, admin, "cancel_only", reason="volatility")
                # The wall clock is set back a minute (an NTP step, a VM migration).
                monkeypatch.setattr(audit, "time", SteppedBack(60))
                state = await put_mode(client, admin, "normal", reason="all clear")

        async with (
            running(fresh_pg_url, tmp_path, **GENEROUS_LIMITS) as second,
            client_of(second) as client,
        ):
            again = (await client.get("/v1/admin/mode", headers=admin.headers)).json()

        assert state["mode"] == "normal"
        assert again["mode"] == "normal"


class SteppedBack:
    """The ``time`` module with a wall clock that runs ``seconds`` behind."""

    def __init__(self, seconds: int) -> None:
        self.offset_ns = seconds * 1_000_000_000

    def time_ns(self) -> int:
        return time.time_ns() - self.offset_ns
