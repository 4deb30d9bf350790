"""The application factory: the FastAPI gateway around one :class:`EngineService`.

The lifespan sets up logging and tracing unless the process did already (``matching-engine
serve`` does, before uvicorn starts), applies pending migrations (unless told not to:
``matching-engine migrate`` may have run them already), opens the service, which recovers the
book and starts the sequencer, freezes the recovered book out of the garbage collector's walks
and, from then on, what survives (:mod:`matching_engine.runtime`), and yields the service as
the lifespan state that :mod:`api.deps` reads from ``request.state``. The book lives in this
one process, so the app must be served by exactly one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems
from api.limits import RequestLimits
from api.metrics import HttpMetricsMiddleware
from api.middleware import (
    BodyLimitMiddleware,
    InFlightLimitMiddleware,
    RequestContextMiddleware,
    TracingMiddleware,
)
from api.order_entry import OrderEntry, OrderEntryMiddleware
from api.routes import routers
from matching_engine import __version__, tracing
from matching_engine.logs import configure_logging
from matching_engine.logs import is_configured as logging_configured
from matching_engine.migrate import upgrade_async
from matching_engine.runtime import Collector
from matching_engine.service import EngineService
from matching_engine.settings import Settings

__all__ = ["Gateway", "State", "create_app"]

_DESCRIPTION = """\
A price-time-priority order-matching engine.

Prices and quantities travel as decimal strings, timestamps as RFC 3339 UTC strings with
nanosecond precision. Every error is `application/problem+json` with a machine-readable `code`.
Authenticate with `Authorization: Bearer <api_key>`; the market data endpoints are public.
"""

_TAGS = [
    {"name": "orders", "description": "Place, read, cancel and amend your own orders."},
    {"name": "fills", "description": "Your own fills."},
    {"name": "market", "description": "Public market data: books and trades."},
    {"name": "instruments", "description": "Tradable symbols; adding one needs an admin key."},
    {"name": "accounts", "description": "Accounts and their API keys (admin)."},
    {"name": "admin", "description": "Degradation modes and the audit trail (admin)."},
]


class State(TypedDict):
    service: EngineService
    limits: RequestLimits


class Gateway(FastAPI):
    """FastAPI, with order entry let in below the framework's outer layers.

    Load shedding comes first, before any other layer. The gateway's own middleware (traces,
    request ids and logs, metrics, the body limit and the order fast path) is one chain, which
    FastAPI builds into its stack as it builds any middleware. ``POST /v1/orders`` goes to
    :class:`api.order_entry.OrderEntry`, which serves it doing the chain's work itself, or
    hands it to the chain directly. The layers outside the chain would only pass the order
    along: Starlette's 500 page is never reached, because the request-context layer answers
    errors first, and FastAPI's telemetry and body limit are switched off here. Every other
    request takes the whole stack.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._order_entry: OrderEntry | None = None  # once FastAPI builds its stack
        self.add_middleware(self._gateway_middleware)
        # Outside everything, so that a refusal costs no other layer.
        self._door = InFlightLimitMiddleware(self._dispatch, settings.max_requests_in_flight)

    def _gateway_middleware(self, app: ASGIApp) -> ASGIApp:
        """The chain around FastAPI's routing, innermost first (see api.middleware)."""
        order_entry = OrderEntryMiddleware(app)
        chain: ASGIApp = order_entry
        chain = BodyLimitMiddleware(chain, max_body_bytes=self._settings.max_body_bytes)
        chain = HttpMetricsMiddleware(chain)
        chain = RequestContextMiddleware(chain)
        chain = TracingMiddleware(chain)
        self._order_entry = OrderEntry(
            chain, order_entry.route, max_body_bytes=self._settings.max_body_bytes
        )
        return chain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._door(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        order_entry = self._order_entry
        if (
            order_entry is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == order_entry.route.path
        ):
            scope["app"] = self  # as Starlette sets it: handlers and the router read it
            await order_entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}"


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        if not logging_configured():
            configure_logging(settings.log_level, json=settings.log_json)
        traces_here = not tracing.is_enabled() and tracing.configure_tracing(settings) is not None
        try:
            if migrate:
                await upgrade_async(settings)
            service = await EngineService.open(settings)
            collector = Collector()
            collector.start()  # the recovered book is long-lived: never walk it again
            freezer = asyncio.create_task(collector.run(), name="gc-freezer")
            try:
                yield {"service": service, "limits": RequestLimits(service)}
            finally:
                freezer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await freezer
                await service.close()
        finally:
            if traces_here:
                tracing.shutdown_tracing()

    app = Gateway(
        settings,
        title="matching-engine",
        version=__version__,
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # The gateway traces and measures itself (api.middleware, api.metrics). FastAPI's own
        # OpenTelemetry layer would add a second server span and second metrics whenever some
        # global provider is set, and asks on every request whether one is.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for router in routers:
        app.include_router(router)
    problems.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = problems.use_problem_media_type(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
