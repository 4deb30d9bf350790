"""Dependencies of the routes: the service from the lifespan state, and who is calling.

A key is sent as ``Authorization: Bearer <api_key>``. A missing, malformed or unknown key answers
401 ``unauthenticated`` (429 once its address has failed too often, see :mod:`api.limits`); a
known key of the wrong role answers 403 ``forbidden``. An admin key cannot trade and a trader key
cannot administer, so each endpoint asks for exactly one role. Trader endpoints are rate limited
per account; a database outage answers 503 for a key not seen before.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.limits import RequestLimits, client_address
from api.problems import HTTPProblem
from matching_engine.accounts import Principal, Role
from matching_engine.service import EngineService

__all__ = [
    "AdminDep",
    "PublicLimit",
    "ServiceDep",
    "TraderDep",
    "get_service",
]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key, created by an admin (`POST /v1/admin/accounts`) or on the command "
    "line (`matching-engine accounts create NAME --role admin`).",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# Every dependency is ``async def``: FastAPI runs a plain ``def`` in a worker thread, and the
# hand-over of the GIL between that thread and the event loop costs more than the work itself.


async def get_service(request: Request) -> EngineService:
    service: EngineService = request.state.service
    return service


ServiceDep = Annotated[EngineService, Depends(get_service)]


# Few, flat dependencies: FastAPI's resolution of each (sub-)dependency costs more than the
# authentication itself, so the service and the limits are read from the request directly.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    service: EngineService = request.state.service
    api_key = None if credentials is None else credentials.credentials
    if api_key is not None and (known := service.accounts.authenticate_known(api_key)):
        return known  # a key seen before: no lookup, no failed-login accounting
    limits: RequestLimits = request.state.limits
    address = client_address(request)
    limits.refuse_if_blocked(address)
    principal = None if api_key is None else await service.authenticate(api_key)
    if principal is None:
        await limits.failed_authentication(address)
        detail = (
            "an Authorization: Bearer <api_key> header is required"
            if api_key is None
            else "unknown API key"
        )
        raise HTTPProblem(401, "unauthenticated", detail, headers=_CHALLENGE)
    return principal


async def get_trader(request: Request, credentials: Credentials) -> Principal:
    principal = await _authenticate(request, credentials)
    if principal.role is not Role.TRADER:
        raise HTTPProblem(
            403, "forbidden", "this endpoint needs a trader key: an admin key cannot trade"
        )
    limits: RequestLimits = request.state.limits
    await limits.account(principal.account_id, write=request.method != "GET")
    return principal


async def get_admin(request: Request, credentials: Credentials) -> Principal:
    principal = await _authenticate(request, credentials)
    if principal.role is not Role.ADMIN:
        raise HTTPProblem(403, "forbidden", "this endpoint needs an admin key")
    return principal


TraderDep = Annotated[Principal, Depends(get_trader)]
AdminDep = Annotated[Principal, Depends(get_admin)]


async def limit_public(request: Request) -> None:
    """The per-address limit of the public market data."""
    limits: RequestLimits = request.state.limits
    await limits.public(client_address(request))


PublicLimit = Depends(limit_public)
