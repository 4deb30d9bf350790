"""``/v1/admin/mode`` and ``/v1/admin/audit``: the SREs' controls and their trail (admins only).

A mode change is on local disk before it is answered and takes effect at once, whether or not
the database answers; it reaches the database's audit table as soon as it can.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminDep, ServiceDep
from api.problems import BODY, documented
from api.schemas import AuditOut, ModeChange, ModeStatus
from matching_engine.logs import request_id

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_AUTH = ("unauthenticated", "forbidden", "rate_limited")


@router.put(
    "/mode",
    response_model=ModeStatus,
    summary="Set a mode",
    responses=documented(*BODY, "unknown_symbol", *_AUTH),
)
async def set_mode(body: ModeChange, admin: AdminDep, service: ServiceDep) -> ModeStatus:
    """Set the engine-wide mode (symbol null), or halt or resume one symbol; a reason is required."""
    status = await service.set_mode(
        actor=admin.account_id,
        mode=body.mode,
        symbol=body.symbol,
        reason=body.reason,
        request_id=request_id.get(),
    )
    return ModeStatus.model_validate(status)


@router.get(
    "/mode", response_model=ModeStatus, summary="Get the modes", responses=documented(*_AUTH)
)
async def get_mode(_admin: AdminDep, service: ServiceDep) -> ModeStatus:
    """The modes in force, why, and the state of the database breaker and the rate limiter."""
    return ModeStatus.model_validate(service.mode_status())


@router.get(
    "/audit",
    response_model=list[AuditOut],
    summary="Read the audit trail",
    responses=documented("validation_error", *_AUTH),
)
async def audit(
    _admin: AdminDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Every admin action, newest first: who, what, before, after, reason, when, request id."""
    return [AuditOut.of(entry) for entry in await service.audit_trail(limit)]
