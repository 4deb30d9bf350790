"""``/v1/orders``: place, read, list, cancel and amend the caller's own orders."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import ServiceDep, TraderDep
from api.problems import BODY, WRITE_UNAVAILABLE, documented
from api.schemas import SYMBOL_PATTERN, CancelAll, ClientOrderId, OrderAmend, OrderCreate, OrderOut
from matching_engine.core import InvalidAmend
from matching_engine.ratelimit import Decision
from matching_engine.service import EngineService
from matching_engine.views import OrderView

__all__ = ["place", "router"]

router = APIRouter(prefix="/v1/orders", tags=["orders"])

_AUTH = ("unauthenticated", "forbidden", "rate_limited")
_STATIC = ("unknown_symbol", "invalid_tick", "invalid_lot", "quantity_out_of_range")
Limit = Annotated[int, Query(ge=1, le=1000, description="At most 1000.")]


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    summary="Place an order",
    responses={
        200: {
            "model": OrderOut,
            "description": "An idempotent retry: the order first placed with this client_order_id.",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "Always `true`.",
                    "schema": {"type": "string"},
                }
            },
        },
        **documented(*BODY, *_STATIC, *_AUTH, "client_order_id_conflict", *WRITE_UNAVAILABLE),
    },
)
async def place_order(
    body: OrderCreate, trader: TraderDep, service: ServiceDep, response: Response
) -> OrderOut:
    """Sequence, journal and match a new order; 201 with the order whatever its outcome."""
    order, replayed = await place(service, trader.account_id, body)
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return OrderOut.of(order)


async def place(
    service: EngineService,
    account_id: str,
    body: OrderCreate,
    admission: asyncio.Future[Decision] | None = None,
) -> tuple[OrderView, bool]:
    """The order ``body`` placed for ``account_id``, and whether it was an idempotent retry.

    Shared by the route and by :mod:`api.order_entry`, its fast path, which passes the order's
    rate-limit decision on its way (:meth:`EngineService.place_order`).
    """
    order, replayed = await service.place_order(
        account_id,
        symbol=body.symbol,
        side=body.side,
        type=body.type,
        quantity=body.quantity,
        price=body.price,
        time_in_force=body.time_in_force,
        post_only=body.post_only,
        stp=body.stp,
        client_order_id=body.client_order_id,
        admission=admission,
    )
    return order, replayed


@router.get(
    "",
    response_model=list[OrderOut],
    summary="List orders",
    responses=documented("validation_error", *_AUTH),
)
async def list_orders(
    trader: TraderDep,
    service: ServiceDep,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None,
    status: Literal["open", "closed", "all"] = "all",
    client_order_id: ClientOrderId | None = None,
    limit: Limit = 100,
) -> list[OrderOut]:
    """The caller's orders, newest first."""
    orders = await service.list_orders(
        trader.account_id,
        symbol=symbol,
        status=status,
        client_order_id=client_order_id,
        limit=limit,
    )
    return [OrderOut.of(order) for order in orders]


@router.get(
    "/{order_id}",
    response_model=OrderOut,
    summary="Get an order",
    responses=documented(*_AUTH, "not_found"),
)
async def get_order(order_id: str, trader: TraderDep, service: ServiceDep) -> OrderOut:
    """One of the caller's orders, with its fills in execution order."""
    return OrderOut.of(await service.get_order(trader.account_id, order_id))


@router.delete(
    "/{order_id}",
    response_model=OrderOut,
    summary="Cancel an order",
    responses=documented(*_AUTH, "not_found", "order_not_open", *WRITE_UNAVAILABLE),
)
async def cancel_order(order_id: str, trader: TraderDep, service: ServiceDep) -> OrderOut:
    """Cancel one of the caller's open orders; 409 when it is already closed."""
    return OrderOut.of(await service.cancel_order(trader.account_id, order_id))


@router.delete(
    "",
    response_model=CancelAll,
    summary="Cancel all orders",
    responses=documented("validation_error", *_AUTH, *WRITE_UNAVAILABLE),
)
async def cancel_all(
    trader: TraderDep,
    service: ServiceDep,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None,
) -> CancelAll:
    """The kill switch: cancel every open order of the caller, optionally of one symbol."""
    return CancelAll(canceled=await service.cancel_all(trader.account_id, symbol))


@router.patch(
    "/{order_id}",
    response_model=OrderOut,
    summary="Amend an order",
    responses=documented(
        *BODY,
        "invalid_amend",
        "invalid_tick",
        "invalid_lot",
        "quantity_out_of_range",
        *_AUTH,
        "not_found",
        "order_not_open",
        *WRITE_UNAVAILABLE,
    ),
)
async def amend_order(
    order_id: str, body: OrderAmend, trader: TraderDep, service: ServiceDep
) -> OrderOut:
    """Change the price and/or the total quantity of an open order."""
    if body.price is None and body.quantity is None:
        raise InvalidAmend("an amend needs a new price, a new quantity or both")
    order = await service.amend_order(
        trader.account_id, order_id, price=body.price, quantity=body.quantity
    )
    return OrderOut.of(order)
