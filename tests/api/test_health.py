"""Probes and metrics: ``/livez``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from matching_engine.service import EngineService
from tests.api.factories import assert_problem

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class RecoveringService:
    ready: bool = False
    sequence: int = 0


class TestLivez:
    async def test_it_answers_ok(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/livez")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReadyz:
    async def test_a_serving_engine_is_ready(
        self, client: httpx.AsyncClient, service: EngineService
    ) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "sequence": service.sequence,
            "mode": "normal",
            "database": "closed",
            "rate_limiter": "local",
        }

    async def test_an_engine_that_does_not_serve_is_503(
        self, client: httpx.AsyncClient, override_service: Callable[[object], None]
    ) -> None:
        override_service(RecoveringService())

        response = await client.get("/readyz")

        assert_problem(response, 503, "unavailable")
        assert response.headers["retry-after"] == "1"


class TestMetrics:
    async def test_it_counts_requests_by_route_template(self, client: httpx.AsyncClient) -> None:
        await client.get("/v1/orders/12345")

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert (
            'matching_engine_http_requests_total{method="GET",route="/v1/orders/{order_id}",'
            'status="4xx"}' in response.text
        )
        assert "/v1/orders/12345" not in response.text

    async def test_it_times_requests_from_half_a_millisecond_to_ten_seconds(
        self, client: httpx.AsyncClient
    ) -> None:
        await client.get("/livez")

        response = await client.get("/metrics")

        buckets = [
            line
            for line in response.text.splitlines()
            if line.startswith("matching_engine_http_request_duration_seconds_bucket")
            and 'route="/livez"' in line
        ]
        assert 'le="0.0005"' in buckets[0]
        assert 'le="10.0"' in buckets[-2]
        assert 'le="+Inf"' in buckets[-1]

    async def test_the_service_metrics_are_exposed_too(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        assert "matching_engine_sequence " in response.text
