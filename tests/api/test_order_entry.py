"""The fast path of ``POST /v1/orders`` (:mod:`api.order_entry`): it answers exactly as the route
would, and hands every request it does not fully understand to the route, body and all."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from api import order_entry
from api.middleware import RequestContextMiddleware
from api.order_entry import OrderEntryMiddleware
from api.routes import orders
from matching_engine import tracing
from matching_engine.logs import request_id
from tests.api.conftest import BACKENDS, Served
from tests.api.factories import Caller, assert_problem, order_body, place

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _comparable(response: httpx.Response) -> tuple[bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    return response.content, headers


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestSameAnswerAsTheRoute:
    @pytest.mark.parametrize("crossing", [False, True], ids=["rests", "trades"])
    @pytest.mark.parametrize("first", ["fast path", "route"])
    async def test_an_order_and_its_idempotent_retry(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        other_trader: Caller,
        symbol: str,
        monkeypatch: pytest.MonkeyPatch,
        first: str,
        crossing: bool,
    ) -> None:
        body = order_body(symbol, client_order_id=f"same-{first.replace(' ', '-')}-{crossing}")
        if crossing:  # the order trades in part: fills, an average price, partially_filled
            await place(client, other_trader, symbol, side="sell", price="99", quantity="1")
            body["quantity"] = "3"
        answers = []
        for path in (first, "route" if first == "fast path" else "fast path"):
            with monkeypatch.context() as patch:
                if path == "route":
                    patch.setattr(order_entry, "_order", lambda _scope, _body: None)
                answers.append(await client.post("/v1/orders", json=body, headers=trader.headers))

        placed, retried = answers
        assert (placed.status_code, retried.status_code) == (201, 200)
        assert len(placed.json()["fills"]) == crossing
        assert retried.headers["idempotent-replayed"] == "true"
        placed_body, placed_headers = _comparable(placed)
        retried_body, retried_headers = _comparable(retried)
        assert placed_body == retried_body
        assert {**placed_headers, "idempotent-replayed": "true"} == retried_headers


class Recorder:
    """The application behind the fast path: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(
    served: Served,
    *,
    method: str = "POST",
    path: str = "/v1/orders",
    headers: dict[str, str],
    chunks: list[bytes],
) -> tuple[int, list[bytes]]:
    """The status the fast path answered (299: the route's), and the bodies the route got."""
    recorder = Recorder()
    middleware = OrderEntryMiddleware(recorder)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
        "state": dict(served.state),
    }
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return int(sent[0]["status"]), recorder.bodies


class TestWhatGoesToTheRoute:
    @pytest.fixture
    def served_pg(self, postgresql_served: Served) -> Served:
        return postgresql_served

    def _json(self, caller: Caller, **extra: str) -> dict[str, str]:
        return {**caller.headers, "Content-Type": "application/json", **extra}

    async def test_a_valid_order_of_a_known_trader_key_is_served_here(
        self, served_pg: Served, trader: Caller, symbol: str
    ) -> None:
        body = json.dumps(order_body(symbol)).encode()

        status, bodies = await _call(served_pg, headers=self._json(trader), chunks=[body])

        assert (status, bodies) == (201, [])

    async def test_a_body_in_several_chunks_is_read_whole(
        self, served_pg: Served, trader: Caller, symbol: str
    ) -> None:
        body = json.dumps(order_body(symbol)).encode()

        status, bodies = await _call(
            served_pg, headers=self._json(trader), chunks=[body[:7], body[7:20], body[20:]]
        )

        assert (status, bodies) == (201, [])

    @pytest.mark.parametrize(
        "case",
        [
            "no key",
            "unknown key",
            "basic auth",
            "admin key",
            "form content type",
            "no content type",
            "not json",
            "json but not an object",
            "invalid order",
            "unknown field",
        ],
    )
    async def test_what_it_cannot_serve_reaches_the_route_with_its_body(
        self, served_pg: Served, trader: Caller, admin: Caller, symbol: str, case: str
    ) -> None:
        body = json.dumps(order_body(symbol)).encode()
        headers = self._json(trader)
        changes: dict[str, Any] = {
            "no key": lambda: headers.pop("Authorization"),
            "unknown key": lambda: headers.update(Authorization="Bearer me_0000000000000000_x"),
            "basic auth": lambda: headers.update(Authorization="Basic dXNlcjpwYXNz"),
            "admin key": lambda: headers.update(admin.headers),
            "form content type": lambda: headers.update(
                {"Content-Type": "application/x-www-form-urlencoded"}
            ),
            "no content type": lambda: headers.pop("Content-Type"),
        }
        bodies = {
            "not json": b"{not json",
            "json but not an object": b"[1, 2]",
            "invalid order": json.dumps(order_body(symbol, quantity=1)).encode(),
            "unknown field": json.dumps(order_body(symbol, colour="red")).encode(),
        }
        if case in changes:
            changes[case]()
        body = bodies.get(case, body)

        status, received = await _call(served_pg, headers=headers, chunks=[body[:5], body[5:]])

        assert (status, received) == (299, [body])

    @pytest.mark.parametrize(("method", "path"), [("GET", "/v1/orders"), ("POST", "/v1/orders/")])
    async def test_other_requests_pass_untouched(
        self, served_pg: Served, trader: Caller, symbol: str, method: str, path: str
    ) -> None:
        body = json.dumps(order_body(symbol)).encode()

        status, received = await _call(
            served_pg, method=method, path=path, headers=self._json(trader), chunks=[body]
        )

        assert (status, received) == (299, [body])


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
class TestTheWayIn:
    async def test_orders_skip_the_framework_outer_layers_and_nothing_else_does(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        entered: list[str] = []
        outer = FastAPI.__call__

        async def counting(app: FastAPI, scope: Scope, receive: Receive, send: Send) -> None:
            entered.append(scope["path"])
            await outer(app, scope, receive, send)

        monkeypatch.setattr(FastAPI, "__call__", counting)
        placed = await client.post("/v1/orders", json=order_body(symbol), headers=trader.headers)
        listed = await client.get("/v1/orders", headers=trader.headers)

        assert (placed.status_code, listed.status_code) == (201, 200)
        assert entered == ["/v1/orders"]  # the GET; the POST went straight to the gateway chain
        # The chain still did its work on the order.
        assert len(placed.headers["x-request-id"]) == 32


class _AccessLines(logging.Handler):
    """Access-log lines as (method, route, status, the request id bound when logged)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[object, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = (getattr(record, name, None) for name in ("method", "route", "status"))
        self.lines.append((*fields, request_id.get()))


def _answered(status: str) -> float:
    labels = {"route": "/v1/orders", "method": "POST", "status": status}
    return REGISTRY.get_sample_value("matching_engine_http_requests_total", labels) or 0.0


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
class TestOneLayer:
    """An order the fast path serves skips the gateway chain too, but not the chain's work."""

    @pytest_asyncio.fixture(loop_scope="session")
    async def chain_entries(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> list[str]:
        """Who entered the chain, after the trader's first order made its key a known one."""
        await place(client, trader, symbol)
        entered: list[str] = []
        outer = RequestContextMiddleware.__call__

        async def counting(
            layer: RequestContextMiddleware, scope: Scope, receive: Receive, send: Send
        ) -> None:
            entered.append(scope["path"])
            await outer(layer, scope, receive, send)

        monkeypatch.setattr(RequestContextMiddleware, "__call__", counting)
        return entered

    async def test_it_carries_the_request_id_is_counted_and_logged(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        chain_entries: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        answered = _answered("2xx")
        access = _AccessLines()
        logger = logging.getLogger("api.access")
        logger.addHandler(access)
        try:
            with caplog.at_level(logging.INFO, logger="api.access"):
                placed = await client.post(
                    "/v1/orders",
                    json=order_body(symbol),
                    headers={**trader.headers, "X-Request-ID": "one-layer-1"},
                )
        finally:
            logger.removeHandler(access)

        assert placed.status_code == 201
        assert chain_entries == []
        assert placed.headers["x-request-id"] == "one-layer-1"
        assert _answered("2xx") == answered + 1
        assert access.lines == [("POST", "/v1/orders", 201, "one-layer-1")]

    async def test_a_refusal_carries_the_request_id(
        self, client: httpx.AsyncClient, trader: Caller, chain_entries: list[str]
    ) -> None:
        refused = await client.post(
            "/v1/orders",
            json=order_body("NOPE-USD"),
            headers={**trader.headers, "X-Request-ID": "one-layer-2"},
        )

        assert_problem(refused, 422, "unknown_symbol")
        assert chain_entries == []
        assert refused.headers["x-request-id"] == "one-layer-2"

    async def test_an_unexpected_error_is_a_500_problem_naming_the_request(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        chain_entries: list[str],
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async def broken(*_args: object) -> None:
            raise RuntimeError("internal state /srv/secret went wrong")

        monkeypatch.setattr(orders, "place", broken)
        answered = _answered("5xx")
        assert chain_entries == []

        response = await client.post(
            "/v1/orders",
            json=order_body(symbol),
            headers={**trader.headers, "X-Request-ID": "one-layer-3"},
        )

        problem = assert_problem(response, 500, "internal_error")
        assert "one-layer-3" in problem["detail"]
        assert "secret" not in response.text
        assert response.headers["x-request-id"] == "one-layer-3"
        assert _answered("5xx") == answered + 1
        assert any(r.message == "unhandled error" and r.exc_info for r in caplog.records)

    async def test_without_a_content_length_an_order_takes_the_chain(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str, chain_entries: list[str]
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield json.dumps(order_body(symbol)).encode()

        placed = await client.post(
            "/v1/orders",
            content=chunks(),
            headers={**trader.headers, "Content-Type": "application/json"},
        )

        assert "content-length" not in placed.request.headers
        assert placed.status_code == 201
        assert chain_entries == ["/v1/orders"]

    async def test_while_tracing_is_on_orders_take_the_chain(
        self,
        client: httpx.AsyncClient,
        trader: Caller,
        symbol: str,
        chain_entries: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(tracing, "is_enabled", lambda: True)

        placed = await client.post("/v1/orders", json=order_body(symbol), headers=trader.headers)

        assert placed.status_code == 201
        assert chain_entries == ["/v1/orders"]
