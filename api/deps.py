"""Dependencies of the routes: the service from the lifespan state, and who is calling.

A key is sent as ``Authorization: Bearer <api_key>``. A missing, malformed or unknown key answers
401 ``unauthenticated``; a known key of the wrong role answers 403 ``forbidden``. An admin key
cannot trade and a trader key cannot administer, so each endpoint asks for exactly one role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import HTTPProblem
from matching_engine.accounts import Principal, Role
from matching_engine.service import EngineService

__all__ = ["AdminDep", "PrincipalDep", "ServiceDep", "TraderDep", "get_service"]

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


async def get_principal(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPProblem(
            401,
            "unauthenticated",
            "an Authorization: Bearer <api_key> header is required",
            headers=_CHALLENGE,
        )
    principal = await service.accounts.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPProblem(401, "unauthenticated", "unknown API key", headers=_CHALLENGE)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_trader(principal: PrincipalDep) -> Principal:
    if principal.role is not Role.TRADER:
        raise HTTPProblem(
            403, "forbidden", "this endpoint needs a trader key: an admin key cannot trade"
        )
    return principal


async def get_admin(principal: PrincipalDep) -> Principal:
    if principal.role is not Role.ADMIN:
        raise HTTPProblem(403, "forbidden", "this endpoint needs an admin key")
    return principal


TraderDep = Annotated[Principal, Depends(get_trader)]
AdminDep = Annotated[Principal, Depends(get_admin)]
