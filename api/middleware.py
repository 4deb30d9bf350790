"""Pure-ASGI middleware: traces, request ids and logs, the last-resort error answer, load
shedding and the body size limit.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request, and the body can be
counted as it streams in instead of being read whole first.

The gateway's layers, outermost first (built by :class:`api.app.Gateway`, which lets
``POST /v1/orders`` into its chain at the top rather than through FastAPI's own outer layers)::

    InFlightLimitMiddleware    503 overloaded at once past the in-flight limit (load shedding),
                               before anything else
    OrderEntry                 (api.order_entry) POST /v1/orders only: serves the orders it can
                               with this chain's work done in one layer; the rest go on below
    (FastAPI's outer layers, for every request but POST /v1/orders)
    TracingMiddleware          the http.request server span, while tracing is on
    RequestContextMiddleware   X-Request-ID on every response, one log line per request; an
                               escaped exception -> 500
    HttpMetricsMiddleware      (api.metrics) counts every answer, the 500 above included
    BodyLimitMiddleware        413 before the body is read when Content-Length is too large,
                               or as soon as a streamed body passes the limit
    OrderEntryMiddleware       (api.order_entry) the fast path of POST /v1/orders
    FastAPI                    routing, dependencies, the problem+json handlers
"""

from __future__ import annotations

import logging
import random
import re
import time

from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import count_answer, method_label, route_template
from api.problems import HTTPProblem, ProblemResponse, problem_response
from matching_engine import tracing
from matching_engine.logs import request_id
from matching_engine.metrics import SHED
from matching_engine.sequencer import request_arrival

__all__ = [
    "REQUEST_ID_HEADER",
    "BodyLimitMiddleware",
    "InFlightLimitMiddleware",
    "RequestContextMiddleware",
    "TracingMiddleware",
    "header",
    "internal_error",
    "log_request",
    "request_id",  # kept here for callers of old: it lives in matching_engine.logs
    "response_request_id",
]

logger = logging.getLogger(__name__)
access_log = logging.getLogger("api.access")

# Probes and scrapes come every few seconds: their lines are debug, the others info, and they
# get no trace.
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def _new_request_id() -> str:
    """128 random bits in hex. A request id correlates, it protects nothing, so the seeded
    Mersenne Twister does: a system-random id cost a system call on every request."""
    return f"{random.getrandbits(128):032x}"


def response_request_id(scope: Scope) -> str:
    """The id an answer carries: the client's ``X-Request-ID`` when it sent a sane one."""
    sent = header(scope, REQUEST_ID_HEADER)
    return sent.decode() if sent and _SANE_REQUEST_ID.fullmatch(sent) else _new_request_id()


def header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the request header ``name`` (lower case), if it was sent."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


class TracingMiddleware:
    """The ``http.request`` server span of each request, while tracing is on (probes and
    scrapes, every few seconds, are left out).

    Its parent is the client's trace when it sent a W3C ``traceparent`` header. It is the current
    span while the request is served, so the spans of the commands the request sends are its
    children (see :mod:`matching_engine.tracing`). Attributes follow the HTTP semantic
    conventions, with the route template, never the raw path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.is_enabled() or scope["path"] in _QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.tracer.start_as_current_span(
            "http.request",
            context=tracing.remote_context(scope["headers"]),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method_label(scope)},
        ) as span:
            try:
                await self.app(scope, receive, send_recording_status)
            finally:
                span.set_attribute("http.route", route_template(scope))
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)


class RequestContextMiddleware:
    """Give every response an ``X-Request-ID``, log one line per request, and answer for
    exceptions nothing else handled.

    The line (logger ``api.access``) has the method, the route template, the status, the
    duration, the request id and the client's address: never a header, a query string or a body,
    which may hold a key. The id is the client's when it sent a sane one, else 32 new random hex
    digits (as a uuid4's hex, at a fraction of its cost).
    An exception that escapes the application before its response started is logged with its
    stack trace and answered with a 500 ``internal_error`` problem that names the request id,
    so the log line can be found. Doing it here, rather than in Starlette's outermost error
    middleware, keeps the id on that response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = response_request_id(scope)
        token = request_id.set(rid)
        began = time.perf_counter()
        started = False
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [
                    (key, value)
                    for key, value in message.get("headers", ())
                    if key.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            response = internal_error(scope, rid)
            if started:
                raise
            await response(scope, receive, send_with_id)
        finally:
            log_request(scope, status, time.perf_counter() - began)
            request_id.reset(token)


def internal_error(scope: Scope, rid: str) -> ProblemResponse:
    """Log the exception being handled, with its stack trace, and answer the 500 that names the
    request id (and nothing of the error itself)."""
    logger.exception("unhandled error", extra={"request_id": rid, "method": scope.get("method")})
    return problem_response(
        500, "internal_error", f"an unexpected error occurred (request id {rid})"
    )


def log_request(scope: Scope, status: int, seconds: float) -> None:
    """The request's access-log line (logger ``api.access``)."""
    level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    method, route = method_label(scope), route_template(scope)
    client = scope.get("client")
    access_log.log(
        level,
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "event": "http.request",
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        },
    )


class BodyLimitMiddleware:
    """Answer 413 ``payload_too_large`` for a request body over ``max_body_bytes``.

    A declared ``Content-Length`` over the limit is refused before the application runs and
    without reading the body. A chunked body is counted as it arrives; the chunk that passes the
    limit raises an :class:`HTTPProblem`, which FastAPI's body reader lets through to the
    problem handler.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> HTTPProblem:
        return HTTPProblem(
            413, "payload_too_large", f"the body is larger than {self.max_body_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            too_large = self._too_large()
            response = problem_response(too_large.status_code, too_large.code, too_large.detail)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)


class InFlightLimitMiddleware:
    """Answer 503 ``overloaded`` at once when ``max_in_flight`` requests are already in progress.

    Load shedding at the door: past the point where the process can keep up, a request that is
    let in only waits longer and makes every other one slower. A request let in has its arrival
    noted, from which its deadline counts (see :mod:`matching_engine.sequencer`). Liveness and
    readiness probes are never shed, so an overloaded engine is not mistaken for a dead one.

    It is the outermost layer, and its refusal is one pre-rendered answer: under overload every
    refusal takes a turn of the same event loop that serves the admitted requests, so a
    refusal must cost as little as it can. It carries the ``X-Request-ID`` and is counted in
    the HTTP metrics (route ``unmatched``: it never reached the router) and in the shed
    counter, but gets no access-log line and no trace span, which would cost more than the
    refusal itself (the shed counter is the record of a flood).
    """

    _EXEMPT = frozenset({"/livez", "/readyz", "/metrics"})
    _REFUSAL = problem_response(
        503, "overloaded", "the engine is overloaded; retry later", {"Retry-After": "1"}
    )

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(scope, send)
            return
        # time.monotonic(), not the loop's time: asyncio.get_running_loop() is a system call.
        arrival = request_arrival.set(time.monotonic())
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            request_arrival.reset(arrival)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        began = time.perf_counter()
        SHED.labels("http").inc()
        rid = response_request_id(scope).encode()
        headers = [*self._REFUSAL.raw_headers, (REQUEST_ID_HEADER, rid)]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self._REFUSAL.body})
        count_answer(scope, 503, time.perf_counter() - began)
