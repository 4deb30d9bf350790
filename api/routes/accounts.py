"""``/v1/admin/accounts``: create accounts and list them (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminDep, ServiceDep
from api.problems import BODY, documented
from api.schemas import AccountCreate, AccountCreated, AccountOut
from matching_engine.accounts import Role
from matching_engine.logs import request_id

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/accounts", tags=["accounts"])

_AUTH = ("unauthenticated", "forbidden", "rate_limited")


@router.post(
    "",
    status_code=201,
    response_model=AccountCreated,
    summary="Create an account",
    responses=documented(*BODY, *_AUTH),
)
async def create_account(
    body: AccountCreate, admin: AdminDep, service: ServiceDep
) -> AccountCreated:
    """Create an account and its API key; the key is shown in this answer only."""
    record, api_key = await service.create_account(
        body.name, Role(body.role), actor=admin.account_id, request_id=request_id.get()
    )
    return AccountCreated.created(record, api_key)


@router.get(
    "", response_model=list[AccountOut], summary="List accounts", responses=documented(*_AUTH)
)
async def list_accounts(_admin: AdminDep, service: ServiceDep) -> list[AccountOut]:
    """Every account, newest first, without keys."""
    return [AccountOut.of(record) for record in await service.list_accounts()]
