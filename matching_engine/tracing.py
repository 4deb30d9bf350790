"""Traces with OpenTelemetry, off by default (``ME_TRACING_ENABLED``).

The spans of one order placement, all in the request's trace::

    http.request      the gateway's server span (method, route template, status code)
    ├─ sequencer.wait from the submit until the batch holding the command starts journaling
    └─ engine.match   the command applied to the core (kind, sequence, number of events)

and, in a trace of its own with a link to each request it carries, ``journal.commit``: the
batch's transaction (its size). A batch serves many requests, so it cannot be the child of one.

The request's context travels with the queued command (:class:`CommandTrace`), and the sequencer
records the per-command spans after the fact with explicit times: it never attaches a request's
context to its own task. While tracing is off nothing is allocated per command: the sequencer
asks :func:`command_trace`, which answers ``None``, and skips the rest.

:data:`tracer` is the module's tracer for any other span: a no-op until :func:`configure_tracing`
turns tracing on. The global OpenTelemetry provider is left alone, so that tests can turn
tracing on and off again in one process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util import types

from matching_engine import __version__, codec
from matching_engine.core import Command
from matching_engine.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "CommandTrace",
    "command_trace",
    "configure_tracing",
    "is_enabled",
    "journal_commit",
    "record_match",
    "remote_context",
    "shutdown_tracing",
    "tracer",
]

_INSTRUMENTATION = "matching_engine"


class _Tracer(trace.Tracer):
    """A tracer that hands every span to the tracer of the moment: a no-op one while tracing is
    off, the configured provider's while it is on."""

    def __init__(self) -> None:
        self.delegate: trace.Tracer = trace.NoOpTracer()

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self.delegate.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # The base class declares a context manager type of its own (private); this one is the
    # standard library's, which behaves the same.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        with self.delegate.start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


#: The tracer of the engine and the gateway.
tracer = _Tracer()
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_NOTHING = contextlib.nullcontext()


def is_enabled() -> bool:
    return _provider is not None


def configure_tracing(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Turn tracing on as ``settings`` say, and answer the provider; ``None`` when it is off.

    Spans are batched and sent to ``exporter`` when one is given (tests pass an in-memory one),
    else over OTLP/HTTP to ``tracing_otlp_endpoint`` (the full URL, ``.../v1/traces``; unset,
    the exporter's own default and ``OTEL_EXPORTER_OTLP_*`` variables apply). A provider an
    earlier call installed is shut down first, which sends what it still holds.
    """
    global _provider
    shutdown_tracing()
    if not settings.tracing_enabled:
        return None
    # Imported only when tracing is on: the SDK and the exporter take a while to import.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint)
    resource = Resource.create(
        {"service.name": settings.tracing_service_name, "service.version": __version__}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer.delegate = provider.get_tracer(_INSTRUMENTATION, __version__)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Send the spans still held and turn tracing off."""
    global _provider
    if _provider is not None:
        provider, _provider = _provider, None
        tracer.delegate = trace.NoOpTracer()
        provider.shutdown()


def remote_context(headers: Iterable[tuple[bytes, bytes]]) -> Context:
    """The context of the trace the client is part of (its W3C ``traceparent`` header), or an
    empty one, which starts a new trace."""
    carrier = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in headers
        if name.lower() in (b"traceparent", b"tracestate")
    }
    return _propagator.extract(carrier, context=Context()) if carrier else Context()


class CommandTrace(NamedTuple):
    """What a queued command carries of its request's trace."""

    context: Context
    submitted_ns: int


def command_trace() -> CommandTrace | None:
    """The current trace, for a command about to be queued; ``None`` while tracing is off."""
    if _provider is None:
        return None
    return CommandTrace(get_current(), time.time_ns())


def journal_commit(
    traces: Iterable[CommandTrace | None], size: int
) -> contextlib.AbstractContextManager[object]:
    """Around the journaling of a batch: ends each command's ``sequencer.wait`` and records the
    ``journal.commit`` span, with an error if the body raises."""
    if _provider is None:
        return _NOTHING
    return _journal_commit([each for each in traces if each is not None], size)


@contextlib.contextmanager
def _journal_commit(traces: list[CommandTrace], size: int) -> Iterator[None]:
    now = time.time_ns()
    links = []
    for each in traces:
        tracer.start_span("sequencer.wait", context=each.context, start_time=each.submitted_ns).end(
            end_time=now
        )
        request = trace.get_current_span(each.context).get_span_context()
        if request.is_valid:
            links.append(Link(request))
    with tracer.start_as_current_span(
        "journal.commit", context=Context(), links=links, attributes={"batch.size": size}
    ):
        yield


def record_match(
    each: CommandTrace, command: Command, sequence: int, events: int, seconds: float
) -> None:
    """Record the ``engine.match`` span of a command the core applied in ``seconds``, just now."""
    end = time.time_ns()
    tracer.start_span(
        "engine.match",
        context=each.context,
        start_time=end - round(seconds * 1e9),
        attributes={
            "command.kind": codec.kind(command),
            "command.sequence": sequence,
            "command.events": events,
        },
    ).end(end_time=end)
