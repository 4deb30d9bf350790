"""``/v1/admin/accounts``: create accounts and list them (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminDep, ServiceDep
from api.problems import BODY, documented
from api.schemas import AccountCreate, AccountCreated, AccountOut
from matching_engine.accounts import Role

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/accounts", tags=["accounts"])

_AUTH = ("unauthenticated", "forbidden")


@router.post(
    "",
    status_code=201,
    response_model=AccountCreated,
    summary="Create an account",
    responses=documented(*BODY, *_AUTH),
)
async def create_account(
    body: AccountCreate, _admin: AdminDep, service: ServiceDep
) -> AccountCreated:
    """Create an account and its API key; the key is shown in this answer only."""
    principal, api_key = await service.accounts.create(body.name, Role(body.role))
    record = await service.accounts.get(principal.account_id)
    if record is None:  # pragma: no cover - it was committed just above
        raise RuntimeError(f"account {principal.account_id} vanished after its creation")
    return AccountCreated.created(record, api_key)


@router.get(
    "", response_model=list[AccountOut], summary="List accounts", responses=documented(*_AUTH)
)
async def list_accounts(_admin: AdminDep, service: ServiceDep) -> list[AccountOut]:
    """Every account, newest first, without keys."""
    return [AccountOut.of(record) for record in await service.accounts.list()]
