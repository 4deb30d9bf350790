"""What every endpoint shares: request ids, body limits, problem+json errors, the schema."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from matching_engine.errors import Unavailable
from matching_engine.service import EngineService
from tests.api.factories import Caller, assert_problem, order_body

pytestmark = pytest.mark.asyncio(loop_scope="session")

UUID4_HEX = re.compile(r"^[0-9a-f]{32}$")


class BrokenService:
    """A service whose every read fails the way a bug would."""

    def instruments(self) -> list[object]:
        raise RuntimeError("internal state /srv/secret went wrong")


class TestRequestId:
    @pytest.mark.parametrize("sent", ["abc-123", "A.b_c-9", "x" * 128])
    async def test_a_sane_client_id_is_echoed(self, client: httpx.AsyncClient, sent: str) -> None:
        response = await client.get("/livez", headers={"X-Request-ID": sent})

        assert response.headers["x-request-id"] == sent

    @pytest.mark.parametrize("sent", ["", "has space", "a/b", "x" * 129, "semi;colon"])
    async def test_an_insane_client_id_is_replaced(
        self, client: httpx.AsyncClient, sent: str
    ) -> None:
        response = await client.get("/livez", headers={"X-Request-ID": sent})

        assert UUID4_HEX.match(response.headers["x-request-id"])

    async def test_an_id_is_generated_when_none_is_sent(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/livez")
        second = await client.get("/livez")

        assert UUID4_HEX.match(first.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    @pytest.mark.parametrize(
        ("method", "path"), [("GET", "/nowhere"), ("GET", "/v1/orders"), ("PUT", "/v1/orders")]
    )
    async def test_errors_carry_the_id_too(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path, headers={"X-Request-ID": "req-1"})

        assert response.status_code >= 400
        assert response.headers["x-request-id"] == "req-1"


class TestBodyLimit:
    async def test_a_70_kib_body_is_413_before_it_is_read(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.post(
            "/v1/orders",
            content=b" " * (70 * 1024),
            headers={**trader.headers, "Content-Type": "application/json", "X-Request-ID": "big"},
        )

        problem = assert_problem(response, 413, "payload_too_large")
        assert "65536" in problem["detail"]
        assert response.headers["x-request-id"] == "big"

    async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(7):
                sent += 1
                yield b" " * (10 * 1024)

        response = await client.post(
            "/v1/orders",
            content=chunks(),
            headers={**trader.headers, "Content-Type": "application/json"},
        )

        assert "content-length" not in response.request.headers
        assert_problem(response, 413, "payload_too_large")

    async def test_a_body_under_the_limit_goes_through(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        body = order_body(symbol, client_order_id="x" * 64)

        response = await client.post("/v1/orders", json=body, headers=trader.headers)

        assert response.status_code == 201


class TestProblems:
    async def test_malformed_json_is_400_validation_error(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.post(
            "/v1/orders",
            content=b'{"symbol": ',
            headers={**trader.headers, "Content-Type": "application/json"},
        )

        problem = assert_problem(response, 400, "validation_error")
        assert problem["type"] == "urn:matching-engine:problem:validation_error"
        assert problem["title"]

    async def test_a_missing_body_is_422_validation_error(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.post("/v1/orders", headers=trader.headers)

        assert_problem(response, 422, "validation_error")

    async def test_a_json_array_body_is_422_validation_error(
        self, client: httpx.AsyncClient, trader: Caller
    ) -> None:
        response = await client.post("/v1/orders", json=[], headers=trader.headers)

        assert_problem(response, 422, "validation_error")

    async def test_the_detail_lists_every_failing_field(
        self, client: httpx.AsyncClient, trader: Caller, symbol: str
    ) -> None:
        body = order_body(symbol, price=100, side="up")

        response = await client.post("/v1/orders", json=body, headers=trader.headers)

        detail = assert_problem(response, 422, "validation_error")["detail"]
        assert "body.price" in detail
        assert "body.side" in detail

    async def test_an_unknown_route_is_404_not_found(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v2/orders")

        assert_problem(response, 404, "not_found")

    async def test_a_wrong_method_is_405_with_every_allowed_method(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.put("/v1/orders")

        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "DELETE, GET, POST"

    async def test_an_unexpected_error_is_500_internal_error_without_a_trace(
        self, client: httpx.AsyncClient, override_service: Callable[[object], None]
    ) -> None:
        override_service(BrokenService())

        response = await client.get("/v1/instruments", headers={"X-Request-ID": "oops-1"})

        problem = assert_problem(response, 500, "internal_error")
        assert "oops-1" in problem["detail"]
        assert response.headers["x-request-id"] == "oops-1"
        assert "Traceback" not in response.text
        assert "secret" not in response.text


class TestServiceErrors:
    @pytest.mark.parametrize(
        "code",
        ["read_only", "cancel_only", "post_only_mode", "halted", "overloaded", "unavailable"],
    )
    async def test_a_write_the_engine_will_not_take_is_503_with_retry_after(
        self,
        client: httpx.AsyncClient,
        service: EngineService,
        monkeypatch: pytest.MonkeyPatch,
        trader: Caller,
        symbol: str,
        code: str,
    ) -> None:
        async def refuse(*_args: object, **_kwargs: object) -> None:
            raise Unavailable(f"the engine will not take this order ({code})", code, 3)

        monkeypatch.setattr(service, "place_order", refuse)

        response = await client.post("/v1/orders", json=order_body(symbol), headers=trader.headers)

        assert_problem(response, 503, code)
        assert response.headers["retry-after"] == "3"


class TestOpenApi:
    @pytest_asyncio.fixture(loop_scope="session")
    async def schema(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    async def test_it_names_the_service(self, schema: dict[str, Any]) -> None:
        assert schema["info"]["title"] == "matching-engine"
        assert schema["info"]["version"]

    async def test_probes_and_metrics_are_hidden(self, schema: dict[str, Any]) -> None:
        assert not {"/livez", "/readyz", "/metrics"} & set(schema["paths"])

    async def test_every_operation_is_documented(self, schema: dict[str, Any]) -> None:
        operations = [op for path in schema["paths"].values() for op in path.values()]
        assert len(operations) >= 10
        for operation in operations:
            [tag] = operation["tags"]
            assert operation["operationId"].startswith(f"{tag}-")
            assert operation["summary"]
            assert operation["description"]

    async def test_every_error_is_a_problem_with_examples(self, schema: dict[str, Any]) -> None:
        for path in schema["paths"].values():
            for operation in path.values():
                for status, response in operation["responses"].items():
                    if status < "400":
                        continue
                    assert set(response["content"]) == {"application/problem+json"}
                    content = response["content"]["application/problem+json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
                    assert content["examples"]

    async def test_placing_an_order_documents_its_answers(self, schema: dict[str, Any]) -> None:
        responses = schema["paths"]["/v1/orders"]["post"]["responses"]

        assert set(responses) == {
            "200",
            "201",
            "400",
            "401",
            "403",
            "409",
            "413",
            "422",
            "429",
            "503",
        }
        examples = responses["422"]["content"]["application/problem+json"]["examples"]
        assert {"invalid_tick", "invalid_lot", "unknown_symbol"} <= set(examples)

    async def test_decimals_are_strings_in_the_schema(self, schema: dict[str, Any]) -> None:
        properties = schema["components"]["schemas"]["OrderCreate"]["properties"]

        assert properties["quantity"]["type"] == "string"
        assert properties["quantity"]["pattern"]
