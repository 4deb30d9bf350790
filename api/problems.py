"""RFC 9457 problem details: how every error leaves the gateway.

Every error is ``application/problem+json``, ``{"type", "title", "status", "detail", "code"}``,
where ``code`` is the machine-readable code of the REST contract. One handler, :func:`handle`,
turns each kind of exception into such a body:

    MatchingError (core)          422  its code (validation_error, invalid_tick, ...)
    Refused (service)             its .status and code (not_found, order_not_open, ...)
    NotFound (service)            404  not_found
    Unavailable (service)         503  its code, with Retry-After
    RateLimited (service)         429  rate_limited, with Retry-After and RateLimit-* headers
    HTTPProblem (gateway)         its status and code (unauthenticated, forbidden, ...)
    RequestValidationError        422  validation_error; 400 when the body is not JSON at all
    HTTPException (routing)       404  not_found, 405 method_not_allowed, 413 payload_too_large

Anything else escapes to :class:`api.middleware.RequestContextMiddleware`, which logs it and
answers 500 ``internal_error`` with no stack trace.

The handler also counts a refused new order by its code (:func:`api.metrics.count_refused_order`):
every refusal of ``POST /v1/orders``, the gateway's and the service's, passes through it.

No detail ever quotes a header, and validation errors name the field and the rule it broke,
never the input, so a key sent in the wrong place is not echoed back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from api.metrics import count_refused_order
from matching_engine.core import MatchingError
from matching_engine.errors import NotFound, RateLimited, Refused, ServiceError, Unavailable
from matching_engine.ratelimit import Decision

__all__ = [
    "BODY",
    "HANDLED",
    "PROBLEM_MEDIA_TYPE",
    "WRITE_UNAVAILABLE",
    "HTTPProblem",
    "Problem",
    "ProblemResponse",
    "documented",
    "handle",
    "install",
    "problem_response",
    "too_many",
    "use_problem_media_type",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:matching-engine:problem:"

# A status the routing layer answers by itself, and the code the contract gives it.
_CODE_OF_STATUS = {
    400: "validation_error",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class Problem(BaseModel):
    """An error, as RFC 9457 problem details with a machine-readable ``code``."""

    type: str = Field(
        description="A URI naming the kind of problem: `urn:matching-engine:problem:<code>`."
    )
    title: str = Field(description="A short, human-readable summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for humans.")
    code: str = Field(description="The machine-readable error code of the REST contract.")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class HTTPProblem(HTTPException):
    """An error the gateway raises itself, with its contract code.

    It is an ``HTTPException`` so that FastAPI lets it through unchanged when it is raised while
    a request body is read (the body size limit does that).
    """

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code


def too_many(decision: Decision, what: str) -> HTTPProblem:
    """429 for a request its rate limit refused, saying when to retry and what is left."""
    retry_after = (
        max(1, math.ceil(decision.retry_after_s)) if math.isfinite(decision.retry_after_s) else 60
    )
    return HTTPProblem(
        429,
        "rate_limited",
        f"too many {what}; retry in {retry_after} s",
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Limit": str(decision.limit),
            "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(decision.reset_after_s))),
        },
    )


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> ProblemResponse:
    body = Problem(
        type=_TYPE_PREFIX + code, title=_title(code), status=status, detail=detail, code=code
    )
    return ProblemResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_detail(errors: Iterable[Any]) -> tuple[int, str]:
    """The status and detail of a validation failure: each field and the rule it broke."""
    failures = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "invalid JSON")
            return 400, f"the body is not valid JSON: {reason}"
        failures.append(f"{'.'.join(location) or 'request'}: {error.get('msg', 'invalid')}")
    return 422, "; ".join(failures) or "the request is invalid"


def _problem_of(exc: Exception) -> tuple[int, str, str, Mapping[str, str] | None]:
    """Status, code, detail and headers for one of the exceptions :func:`install` registers."""
    if isinstance(exc, MatchingError):
        return 422, exc.code.value, exc.detail, None
    if isinstance(exc, Refused):
        return exc.status, exc.code, exc.detail, None
    if isinstance(exc, NotFound):
        return 404, exc.code, exc.detail, None
    if isinstance(exc, Unavailable):
        return 503, exc.code, exc.detail, {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, RateLimited):
        problem = too_many(exc.decision, "requests")
        return problem.status_code, problem.code, problem.detail, problem.headers
    if isinstance(exc, ServiceError):
        return exc.status_hint, exc.code, exc.detail, None
    if isinstance(exc, RequestValidationError):
        status, detail = _validation_detail(exc.errors())
        return status, "validation_error", detail, None
    if isinstance(exc, HTTPProblem):
        return exc.status_code, exc.code, exc.detail, exc.headers
    if isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        return status, _CODE_OF_STATUS.get(status, "http_error"), detail, exc.headers
    raise TypeError(f"no problem mapping for {type(exc).__name__}")  # pragma: no cover


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to; Starlette's ``Allow`` names only its first route's."""
    path = request.url.path
    methods = {
        method
        for route in iter_route_contexts(request.app.routes)
        if route.methods and route.path_regex.fullmatch(path)
        for method in route.methods
    }
    return ", ".join(sorted(methods))


async def handle(request: Request, exc: Exception) -> ProblemResponse:
    """The one exception handler: any known error to its problem+json response."""
    status, code, detail, headers = _problem_of(exc)
    count_refused_order(request, code)
    if status == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return problem_response(status, code, detail, headers)


# What :func:`handle` answers for; anything else is a bug, left to the 500 of the stack.
HANDLED = (MatchingError, ServiceError, RequestValidationError, HTTPException)


def install(app: FastAPI) -> None:
    for kind in HANDLED:
        app.add_exception_handler(kind, handle)


# -- OpenAPI -------------------------------------------------------------------------------------

# Example problems for the schema: name -> (status, code, detail).
_EXAMPLES: dict[str, tuple[int, str, str]] = {
    "malformed_body": (400, "validation_error", "the body is not valid JSON: Expecting value"),
    "validation_error": (422, "validation_error", "body.price: Input should be a decimal string"),
    "unknown_symbol": (422, "unknown_symbol", "no instrument BTC-EUR"),
    "invalid_tick": (422, "invalid_tick", "price 101.255 is not a multiple of 0.01"),
    "invalid_lot": (422, "invalid_lot", "quantity 0.0005 is not a multiple of 0.001"),
    "quantity_out_of_range": (
        422,
        "quantity_out_of_range",
        "quantity must be between 0.001 and 1000",
    ),
    "invalid_amend": (422, "invalid_amend", "an amend needs a new price, a new quantity or both"),
    "unauthenticated": (
        401,
        "unauthenticated",
        "an Authorization: Bearer <api_key> header is required",
    ),
    "forbidden": (403, "forbidden", "this endpoint needs a trader key"),
    "not_found": (404, "not_found", "no such order"),
    "order_not_open": (409, "order_not_open", "order 42 is filled"),
    "client_order_id_conflict": (
        409,
        "client_order_id_conflict",
        "client_order_id abc-1 was used for a different order",
    ),
    "instrument_exists": (409, "instrument_exists", "instrument BTC-USD exists"),
    "payload_too_large": (413, "payload_too_large", "the body is larger than 65536 bytes"),
    "rate_limited": (429, "rate_limited", "too many requests; retry in 1 s"),
    "read_only": (503, "read_only", "the engine is read-only: the database is unavailable"),
    "cancel_only": (503, "cancel_only", "the engine only takes cancels"),
    "post_only_mode": (503, "post_only_mode", "the engine only takes post-only orders"),
    "halted": (503, "halted", "BTC-USD is halted"),
    "overloaded": (503, "overloaded", "the engine is overloaded"),
    "unavailable": (503, "unavailable", "the engine is not serving"),
}

# Problems every write may answer while the engine degrades.
WRITE_UNAVAILABLE = (
    "read_only",
    "cancel_only",
    "post_only_mode",
    "halted",
    "overloaded",
    "unavailable",
)
# Problems of any endpoint that reads a JSON body.
BODY = ("malformed_body", "validation_error", "payload_too_large")


def documented(*names: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses={...}`` of a route: its problems, grouped by status, with an example each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for name in names:
        status, code, detail = _EXAMPLES[name]
        response = responses.setdefault(
            status,
            {
                "model": Problem,
                "description": HTTPStatus(status).phrase,
                "content": {PROBLEM_MEDIA_TYPE: {"examples": {}}},
            },
        )
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            }
        elif status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}
            }
        example = Problem(
            type=_TYPE_PREFIX + code, title=_title(code), status=status, detail=detail, code=code
        )
        response["content"][PROBLEM_MEDIA_TYPE]["examples"][name] = {
            "summary": _title(code),
            "value": example.model_dump(),
        }
    return responses


def use_problem_media_type(openapi: dict[str, Any]) -> dict[str, Any]:
    """Move the schema FastAPI puts under ``application/json`` to problem+json on error responses.

    FastAPI also documents its own 422 body on every route with a parameter that did not
    declare one; on ours that cannot happen (a string path parameter always validates), so
    those entries and their schemas go.
    """
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            for status, response in responses.items():
                content = response.get("content", {})
                if not str(status).startswith(("4", "5")) or "application/json" not in content:
                    continue
                examples = content.get(PROBLEM_MEDIA_TYPE, {})
                content[PROBLEM_MEDIA_TYPE] = {**content.pop("application/json"), **examples}
    schemas = openapi.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi
