"""One module per resource; :data:`routers` lists them in the order the schema shows them."""

from fastapi import APIRouter

from api.routes import accounts, admin, fills, health, instruments, market, metrics, orders

__all__ = ["routers"]

routers: tuple[APIRouter, ...] = (
    orders.router,
    fills.router,
    market.router,
    instruments.router,
    accounts.router,
    admin.router,
    health.router,
    metrics.router,
)
