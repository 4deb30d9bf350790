"""What a client can read of the engine once the load has stopped: the sequence, the book, the
trades and every trader's orders, read through the REST API and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadtests.chaos.check import SymbolState, fingerprint
from loadtests.chaos.client import Connection, NoAnswer
from loadtests.chaos.world import LOT_SIZE, SYMBOL, TICK_SIZE

__all__ = ["State", "capture", "get_json"]

_PAGE = 1000  # the most a list endpoint answers


@dataclass
class State:
    sequence: int
    book: dict[str, Any]
    trades: list[dict[str, Any]]  # newest first, at most one page
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # trader -> all
    open_orders: list[dict[str, Any]] = field(default_factory=list)  # every trader's
    open_complete: bool = True  # no trader had more open orders than one page holds

    @property
    def trade_count(self) -> int:
        """Trade ids count from 1, so the newest one is the number of trades."""
        return max((int(trade["trade_id"]) for trade in self.trades), default=0)

    @property
    def book_order_count(self) -> int:
        return sum(level[2] for level in self.book["bids"] + self.book["asks"])

    def fingerprint(self) -> str | None:
        """The engine's fingerprint as this state shows it; None if not every open order could
        be read."""
        if not self.open_complete:
            return None
        last = self.trades[0]["price"] if self.trades else None
        symbol = SymbolState(SYMBOL, TICK_SIZE, LOT_SIZE, last, self.open_orders)
        return fingerprint(self.sequence, self.trade_count, [symbol])


async def get_json(
    connection: Connection, path: str, headers: dict[str, str] | None = None, attempts: int = 60
) -> Any:
    """GET ``path``; waits out 429 and 503 (as ``Retry-After`` says) and lost answers."""
    for _ in range(attempts):
        try:
            answer = await connection.request("GET", path, headers=headers, timeout_s=10.0)
        except NoAnswer:
            await asyncio.sleep(0.25)
            continue
        if answer.status == 200:
            return answer.json()
        if answer.status in (429, 503):
            await asyncio.sleep(min(2.0, float(answer.headers.get("retry-after", "0.25"))))
            continue
        raise RuntimeError(f"GET {path}: {answer.status} {answer.body[:300]!r}")
    raise RuntimeError(f"GET {path}: no answer after {attempts} attempts")


async def _orders_of(
    port: int, key: str, asked: Iterable[str], lookups: asyncio.Semaphore
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A trader's orders of the symbol: (all of them that were found, the open ones).

    The list endpoints answer one page of each status; when a page is full, every order asked
    for and not on it is looked up by its client order id."""
    headers = {"Authorization": f"Bearer {key}"}
    connection = Connection(port)
    try:
        base = f"/v1/orders?symbol={SYMBOL}&limit={_PAGE}"
        open_orders = await get_json(connection, f"{base}&status=open", headers)
        closed = await get_json(connection, f"{base}&status=closed", headers)
    finally:
        connection.close()
    orders = open_orders + closed
    if len(open_orders) < _PAGE and len(closed) < _PAGE:
        return orders, open_orders
    found = {order["client_order_id"] for order in orders}

    async def look_up(client_order_id: str) -> list[dict[str, Any]]:
        async with lookups:
            connection = Connection(port)
            try:
                path = f"/v1/orders?client_order_id={quote(client_order_id)}"
                result: list[dict[str, Any]] = await get_json(connection, path, headers)
                return result
            finally:
                connection.close()

    missing = [cid for cid in asked if cid not in found]
    for more in await asyncio.gather(*(look_up(cid) for cid in missing)):
        orders += more
    return orders, open_orders


async def capture(
    port: int, traders: Mapping[str, str], asked: Mapping[str, Iterable[str]] | None = None
) -> State:
    """Read the state. With ``asked`` (trader -> client order ids), every trader's orders too;
    without, only what the fingerprint needs (the open orders)."""
    connection = Connection(port)
    try:
        ready = await get_json(connection, "/readyz")
        book = await get_json(connection, f"/v1/book/{SYMBOL}?depth={_PAGE}")
        trades = await get_json(connection, f"/v1/trades/{SYMBOL}?limit={_PAGE}")
    finally:
        connection.close()
    if ready["sequence"] != book["sequence"]:
        raise RuntimeError(f"the engine moved while being read: {ready} vs {book['sequence']}")
    state = State(ready["sequence"], book, trades)
    lookups = asyncio.Semaphore(16)
    names = list(traders)
    found = await asyncio.gather(
        *(_orders_of(port, traders[name], (asked or {}).get(name, ()), lookups) for name in names)
    )
    for name, (orders, open_orders) in zip(names, found, strict=True):
        if asked is not None:
            state.orders[name] = orders
        state.open_orders += open_orders
        state.open_complete &= len(open_orders) < _PAGE
    return state
