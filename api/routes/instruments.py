"""Instruments: listed publicly, added by admins."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminDep, PublicLimit, ServiceDep
from api.problems import BODY, WRITE_UNAVAILABLE, documented
from api.schemas import InstrumentCreate, InstrumentOut
from matching_engine.logs import request_id

__all__ = ["router"]

router = APIRouter(tags=["instruments"])


@router.post(
    "/v1/admin/instruments",
    status_code=201,
    response_model=InstrumentOut,
    summary="Add an instrument",
    responses=documented(
        *BODY,
        "invalid_lot",
        "unauthenticated",
        "forbidden",
        "instrument_exists",
        *WRITE_UNAVAILABLE,
    ),
)
async def add_instrument(
    body: InstrumentCreate, admin: AdminDep, service: ServiceDep
) -> InstrumentOut:
    """Make a symbol tradable, with its tick and lot sizes, quantity range and price band."""
    instrument = await service.add_instrument(
        body.instrument(), actor=admin.account_id, request_id=request_id.get()
    )
    return InstrumentOut.of(instrument)


@router.get(
    "/v1/instruments",
    response_model=list[InstrumentOut],
    summary="List instruments",
    dependencies=[PublicLimit],
    responses=documented("rate_limited"),
)
async def list_instruments(service: ServiceDep) -> list[InstrumentOut]:
    """Every tradable instrument."""
    return [InstrumentOut.of(instrument) for instrument in service.instruments()]
