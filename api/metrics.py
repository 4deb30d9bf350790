"""HTTP metrics: a pure-ASGI middleware counting and timing every answer.

Labels are the route template (``/v1/orders/{order_id}``, never the raw path, so an id cannot
create a time series), the method and the status class (``2xx`` ... ``5xx``). A request that
matched no route (a 404, or a 413 refused before routing) is labelled ``unmatched``.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HTTP_REQUESTS_TOTAL", "HTTP_REQUEST_DURATION_SECONDS", "HttpMetricsMiddleware"]

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
            # The router writes the matched route into the shared scope on its way in.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            labels = (route, method, f"{status // 100}xx")
            HTTP_REQUESTS_TOTAL.labels(*labels).inc()
            HTTP_REQUEST_DURATION_SECONDS.labels(*labels).observe(time.perf_counter() - start)
