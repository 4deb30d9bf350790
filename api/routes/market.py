"""Public market data: the book and the recent trades of a symbol. No key needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PublicLimit, ServiceDep
from api.problems import documented
from api.schemas import Book, Trade

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["market"], dependencies=[PublicLimit])


@router.get(
    "/book/{symbol}",
    response_model=Book,
    summary="Get the order book",
    responses=documented("validation_error", "not_found", "rate_limited"),
)
async def get_book(
    symbol: str,
    service: ServiceDep,
    depth: Annotated[int, Query(ge=1, le=1000, description="Levels per side, at most 1000.")] = 50,
) -> Book:
    """The aggregated levels of a symbol's book, best first, as of ``sequence``."""
    return Book.of(service.book(symbol, depth))


@router.get(
    "/trades/{symbol}",
    response_model=list[Trade],
    summary="List recent trades",
    responses=documented("validation_error", "not_found", "rate_limited"),
)
async def list_trades(
    symbol: str,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most 1000.")] = 100,
) -> list[Trade]:
    """A symbol's trades, newest first."""
    return [Trade.of(trade) for trade in await service.trades(symbol, limit)]
