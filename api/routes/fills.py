"""``/v1/fills``: the caller's own fills."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ServiceDep, TraderDep
from api.problems import documented
from api.schemas import SYMBOL_PATTERN, Fill

__all__ = ["router"]

router = APIRouter(prefix="/v1/fills", tags=["fills"])


@router.get(
    "",
    response_model=list[Fill],
    summary="List fills",
    responses=documented("validation_error", "unauthenticated", "forbidden", "rate_limited"),
)
async def list_fills(
    trader: TraderDep,
    service: ServiceDep,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most 1000.")] = 100,
) -> list[Fill]:
    """The caller's fills, newest first."""
    fills = await service.list_fills(trader.account_id, symbol=symbol, limit=limit)
    return [Fill.of(fill) for fill in fills]
