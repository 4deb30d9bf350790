"""The fast path of ``POST /v1/orders``: order entry without the framework's per-request work.

Placing orders is what the gateway does most, and under load FastAPI's routing, dependency
resolution and response handling cost more server CPU than the order's whole trip through the
engine. This pure-ASGI middleware, innermost in the stack (so request ids, metrics, logs, load
shedding and the body limit still apply), serves the requests it fully understands with the
same parts the route uses: the key cache, the per-account rate limit, the request model,
:func:`api.routes.orders.place`, the response model's fields and the problem handler.

Anything else goes to FastAPI unchanged, its body included: another path or method, a content
type other than JSON, a key not in the cache (an unknown key, a new one, an admin's), or a body
that is not a valid order. So every error about the request itself is still answered by the one
code path of the framework, and the fast path never accepts what the route would refuse.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.limits import RequestLimits
from api.middleware import header
from api.routes import orders
from api.schemas import OrderCreate, order_fields
from matching_engine.accounts import Role
from matching_engine.service import EngineService

__all__ = ["OrderEntryMiddleware"]

_JSON = b"application/json"
_CREATED = [(b"content-type", _JSON)]
_REPLAYED = [(b"content-type", _JSON), (b"idempotent-replayed", b"true")]


class OrderEntryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = next(  # the route this stands in for
            route
            for route in orders.router.routes
            if isinstance(route, APIRoute) and route.endpoint is orders.place_order
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.route.path:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # as the router would: metrics and logs name its template
        try:
            body, more = await _read_body(receive)
        except problems.HTTPProblem as too_large:  # raised by the body limit's receive
            await _answer_problem(scope, receive, send, too_large)
            return
        order = None if more else _order(scope, body)
        if order is None:
            await self.app(scope, _replaying(body, more, receive), send)
            return
        account_id, fields = order
        state = scope["state"]
        service: EngineService = state["service"]
        limits: RequestLimits = state["limits"]
        try:
            await limits.account(account_id, write=True)
            placed, replayed = await orders.place(service, account_id, fields)
        except problems.HANDLED as error:
            await _answer_problem(scope, receive, send, error)
            return
        payload = orjson.dumps(order_fields(placed))
        headers = _REPLAYED if replayed else _CREATED
        await send(
            {
                "type": "http.response.start",
                "status": 200 if replayed else 201,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _answer_problem(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    response = await problems.handle(Request(scope), error)
    await response(scope, receive, send)


def _order(scope: Scope, body: bytes) -> tuple[str, OrderCreate] | None:
    """The caller's account and the order, when the fast path can serve the request."""
    content_type = header(scope, b"content-type")
    if content_type is None or content_type.partition(b";")[0].strip().lower() != _JSON:
        return None
    authorization = header(scope, b"authorization")
    # Parsed as the route's HTTPBearer parses it.
    scheme, key = get_authorization_scheme_param(
        None if authorization is None else authorization.decode("latin-1")
    )
    if scheme.lower() != "bearer" or not key:
        return None
    service: EngineService = scope["state"]["service"]
    principal = service.accounts.authenticate_known(key)
    if principal is None or principal.role is not Role.TRADER:
        return None
    try:
        # As the route reads it: json.loads, then the model in Python mode.
        data: Any = json.loads(body)
        return principal.account_id, OrderCreate.model_validate(data)
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        return None


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, or, when the client is gone first, what came and that message."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replaying(body: bytes, last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the body read so far over again, then carries on."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if last is not None:
        pending = [{"type": "http.request", "body": body, "more_body": True}, last]

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
