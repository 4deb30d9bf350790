"""Errors of the service runtime, each with the machine-readable ``code`` of the REST contract.

The gateway maps them to HTTP in one place; nothing here knows about HTTP except the status
hint, as the core errors carry none.

    ServiceError  (abstract)
    ├── Refused               a command refused by the book's state     code from the core
    │                         (not_found 404, order_not_open / client_order_id_conflict /
    │                          instrument_exists / price_band / post_only_would_cross 409)
    ├── NotFound              no such resource, or not the caller's     code=not_found
    ├── Unavailable           the engine will not take a write now (503, Retry-After)
    │                         code=unavailable
    └── RateLimited           the account's rate limit refused the command before it was
                              sequenced (429, Retry-After)             code=rate_limited
"""

from __future__ import annotations

from typing import Any, ClassVar

from matching_engine.core import ErrorCode
from matching_engine.ratelimit import Decision

__all__ = ["NotFound", "RateLimited", "Refused", "ServiceError", "Unavailable"]


class ServiceError(Exception):
    code: str
    status_hint: ClassVar[int] = 500

    def __new__(cls, *args: Any, **kwargs: Any) -> ServiceError:
        if cls is ServiceError:
            raise TypeError("ServiceError is abstract: raise one of its subclasses")
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


_REFUSAL_STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_SYMBOL: 422,
    ErrorCode.QUANTITY_OUT_OF_RANGE: 422,
    ErrorCode.INVALID_AMEND: 422,
}


class Refused(ServiceError):
    """The engine refused a sequenced command; nothing changed."""

    def __init__(self, code: ErrorCode, detail: str | None = None) -> None:
        super().__init__(detail or code.value.replace("_", " "), code.value)
        self.status = _REFUSAL_STATUS.get(code, 409)


class NotFound(ServiceError):
    code = "not_found"
    status_hint = 404


class Unavailable(ServiceError):
    code = "unavailable"
    status_hint = 503

    def __init__(self, detail: str, code: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(detail, code)
        self.retry_after_s = retry_after_s


class RateLimited(ServiceError):
    code = "rate_limited"
    status_hint = 429

    def __init__(self, decision: Decision) -> None:
        super().__init__("too many requests")
        self.decision = decision
