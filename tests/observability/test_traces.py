"""Traces: the spans of an order placement, their parents, and nothing at all while tracing is off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from matching_engine import tracing
from matching_engine.settings import Settings
from tests.api.conftest import GENEROUS_LIMITS
from tests.api.factories import create_instrument, create_trader, order_body
from tests.observability.conftest import running

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(database_url=None, data_dir=tmp_path, **GENEROUS_LIMITS, **overrides)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    """Tracing on, into memory; off again after the test."""
    exporter = InMemorySpanExporter()
    provider = tracing.configure_tracing(settings(tmp_path, tracing_enabled=True), exporter)
    assert provider is not None
    yield exporter, provider
    tracing.shutdown_tracing()


def finished(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> dict[str, list[ReadableSpan]]:
    provider.force_flush()
    spans: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def order_request(spans: dict[str, list[ReadableSpan]]) -> ReadableSpan:
    """The server span of the one ``POST /v1/orders``."""
    [request] = [
        span
        for span in spans["http.request"]
        if (span.attributes or {}).get("http.route") == "/v1/orders"
    ]
    return request


async def place_one_order(tmp_path: Path, headers: dict[str, str] | None = None) -> None:
    async with running(settings(tmp_path)) as (served, client):
        symbol = await create_instrument(served.service)
        trader = await create_trader(served.service)
        response = await client.post(
            "/v1/orders", json=order_body(symbol), headers={**trader.headers, **(headers or {})}
        )
        assert response.status_code == 201, response.text


class TestAnOrderPlacement:
    @pytest.mark.asyncio
    async def test_its_spans_are_children_of_the_request_span(
        self, exporter: tuple[InMemorySpanExporter, TracerProvider], tmp_path: Path
    ) -> None:
        await place_one_order(tmp_path)
        spans = finished(*exporter)

        request = order_request(spans)
        assert request.kind is SpanKind.SERVER
        assert request.parent is None
        assert dict(request.attributes or {}) == {
            "http.request.method": "POST",
            "http.route": "/v1/orders",
            "http.response.status_code": 201,
        }
        context = request.get_span_context()
        children = [
            span
            for name in ("sequencer.wait", "engine.match")
            for span in spans[name]
            if span.parent is not None and span.parent.span_id == context.span_id
        ]
        assert sorted(span.name for span in children) == ["engine.match", "sequencer.wait"]
        assert {span.context.trace_id for span in children} == {context.trace_id}
        [wait] = [span for span in children if span.name == "sequencer.wait"]
        [match] = [span for span in children if span.name == "engine.match"]
        assert request.start_time <= wait.start_time <= wait.end_time <= match.start_time
        assert match.end_time <= request.end_time
        assert match.attributes is not None
        assert match.attributes["command.kind"] == "new_order"
        assert match.attributes["command.events"] == 1  # accepted, and resting
        assert match.attributes["command.sequence"] >= 2

    @pytest.mark.asyncio
    async def test_its_batch_commit_links_to_the_request(
        self, exporter: tuple[InMemorySpanExporter, TracerProvider], tmp_path: Path
    ) -> None:
        await place_one_order(tmp_path)
        spans = finished(*exporter)

        request = order_request(spans)
        context = request.get_span_context()
        [commit] = [
            span
            for span in spans["journal.commit"]
            if any(link.context.span_id == context.span_id for link in span.links)
        ]
        assert commit.parent is None  # a batch serves many requests: a trace of its own
        assert commit.attributes is not None
        assert commit.attributes["batch.size"] == 1
        assert commit.status.status_code is not StatusCode.ERROR

    @pytest.mark.asyncio
    async def test_a_client_trace_is_continued(
        self, exporter: tuple[InMemorySpanExporter, TracerProvider], tmp_path: Path
    ) -> None:
        await place_one_order(tmp_path, {"traceparent": TRACEPARENT})
        spans = finished(*exporter)

        request = order_request(spans)
        assert format(request.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
        assert request.parent is not None
        assert format(request.parent.span_id, "016x") == TRACEPARENT.split("-")[2]


class TestTracingOff:
    @pytest.mark.asyncio
    async def test_nothing_asks_for_a_span(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert tracing.configure_tracing(settings(tmp_path)) is None
        # A recording tracer behind the module's, while tracing stays off: any span asked for
        # anyway would end up in the exporter.
        spy = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spy))
        monkeypatch.setattr(tracing.tracer, "delegate", provider.get_tracer("spy"))

        await place_one_order(tmp_path)

        assert not tracing.is_enabled()
        assert tracing.command_trace() is None
        assert spy.get_finished_spans() == ()

    def test_a_global_provider_adds_no_spans_of_the_framework(self, tmp_path: Path) -> None:
        # A process-wide provider (auto-instrumentation installs one) can be set only once per
        # process, hence the child process. Only the gateway's own middleware may trace.
        script = f"""
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient
from api.app import create_app
from matching_engine.settings import Settings

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
app = create_app(Settings(database_url=None, data_dir={str(tmp_path)!r}))
with TestClient(app) as client:
    assert client.get("/v1/instruments").status_code == 200
assert spans.get_finished_spans() == (), [span.name for span in spans.get_finished_spans()]
"""
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)

    def test_it_is_off_by_default(self) -> None:
        assert Settings().tracing_enabled is False
        assert not tracing.tracer.start_span("probe").is_recording()


class TestTheLifespan:
    @pytest.mark.asyncio
    async def test_it_turns_tracing_on_as_the_settings_say_and_off_at_the_end(
        self, tmp_path: Path
    ) -> None:
        on = settings(
            tmp_path,
            tracing_enabled=True,
            tracing_otlp_endpoint="http://127.0.0.1:9/v1/traces",
            tracing_service_name="engine-under-test",
        )
        async with running(on):
            assert tracing.is_enabled()
            assert tracing.tracer.start_span("probe").is_recording()
        assert not tracing.is_enabled()
