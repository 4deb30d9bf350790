"""HTTP metrics: a pure-ASGI middleware counting and timing every answer.

Labels are the route template (``/v1/orders/{order_id}``, never the raw path, so an id cannot
create a time series), the method and the status class (``2xx`` ... ``5xx``). A request that
matched no route (a 404, or a 413 refused before routing) is labelled ``unmatched``.

New orders the gateway or the service refuse are counted with the orders the engine took, in
``matching_engine_orders_total{outcome="refused", reason=<error code>}``, by the problem handler
(:func:`count_refused_order`). Requests shed at the door before routing are not orders yet: they
are in ``matching_engine_shed_requests_total{stage="http"}``.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matching_engine.core import ErrorCode
from matching_engine.metrics import labelled, orders_by_outcome
from matching_engine.modes import Refusal

__all__ = [
    "HTTP_REQUESTS_TOTAL",
    "HTTP_REQUEST_DURATION_SECONDS",
    "HttpMetricsMiddleware",
    "count_answer",
    "count_refused_order",
    "method_label",
    "route_template",
]

_LABELS = ("route", "method", "status")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS_TOTAL = Counter(
    "matching_engine_http_requests_total",
    "HTTP requests answered, by route template, method and status class.",
    _LABELS,
)
HTTP_REQUEST_DURATION_SECONDS = Histogram(
    "matching_engine_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template, method and "
    "status class.",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


_requests, _durations = labelled(HTTP_REQUESTS_TOTAL), labelled(HTTP_REQUEST_DURATION_SECONDS)

# The codes a refused new order is counted under: a fixed set, whatever a future error says.
_REFUSAL_CODES = frozenset(
    {
        *(code.value for code in ErrorCode),
        *(refusal.value for refusal in Refusal),
        "overloaded",
        "unavailable",
        "rate_limited",
        "payload_too_large",
    }
)


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, or ``unmatched``."""
    # The router writes the matched route into the shared scope on its way in.
    return getattr(scope.get("route"), "path", None) or "unmatched"


def count_answer(scope: Scope, status: int, seconds: float) -> None:
    """Count one answered request and how long it took."""
    labels = (route_template(scope), method_label(scope), f"{status // 100}xx")
    _requests(*labels).inc()
    _durations(*labels).observe(seconds)


def method_label(scope: Scope) -> str:
    method: str = scope["method"]
    return method if method in _METHODS else "OTHER"


def count_refused_order(request: Request, code: str) -> None:
    """Count a refused ``POST /v1/orders`` (authentication failures are not orders)."""
    if (
        code in _REFUSAL_CODES
        and request.method == "POST"
        and route_template(request.scope) == "/v1/orders"
    ):
        orders_by_outcome("refused", code).inc()


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            count_answer(scope, status, time.perf_counter() - start)
