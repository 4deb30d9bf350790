"""Crash recovery: ``kill -9`` the real server under load, restart it, lose nothing acknowledged.

Jepsen-style: every request carries a unique ``client_order_id`` and the client keeps a log of
what it asked and what it was told: ``ok`` (a 2xx, with the body), ``fail`` (a definite 4xx) or
``info`` (no answer: the server died). After the restart the server must hold every ``ok``
exactly as acknowledged or further along (fills only grow; a closed order stays as it closed),
nothing that was never asked for, and only whole commands: every order consistent with its
fills and the book. A second restart must give back the very same state.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.server import ServerProcess, cli, create_account

WORKERS = 12
ROUNDS = 3
CLOSED = {"filled", "canceled", "rejected"}


@dataclass
class Log:
    """One trader's history: orders by client order id, and cancels."""

    key: str
    asked: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancels: dict[str, dict[str, Any]] = field(default_factory=dict)  # order_id -> acked body
    unanswered: int = 0


async def _trade(url: str, symbol: str, log: Log, rng: random.Random, stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {log.key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        for number in range(400):
            if stop.is_set():
                return
            open_ids = [
                o["order_id"]
                for o in log.acked.values()
                if o["status"] in ("new", "partially_filled")
            ]
            try:
                if open_ids and rng.random() < 0.3:
                    order_id = rng.choice(open_ids)
                    response = await client.delete(f"/v1/orders/{order_id}")
                    if response.status_code == 200:
                        log.cancels[order_id] = response.json()
                        continue
                    assert response.status_code in (404, 409), response.text
                    continue
                client_order_id = f"{id(log):x}-{number}"
                body = {
                    "symbol": symbol,
                    "side": rng.choice(["buy", "sell"]),
                    "type": "limit",
                    "price": str(Decimal(100) + Decimal(rng.randint(-5, 5))),
                    "quantity": str(rng.randint(1, 20)),
                    "time_in_force": rng.choice(["gtc", "gtc", "gtc", "ioc"]),
                    "client_order_id": client_order_id,
                }
                log.asked[client_order_id] = body
                response = await client.post("/v1/orders", json=body)
                assert response.status_code == 201, response.text
                log.acked[client_order_id] = response.json()
            except httpx.TransportError:
                log.unanswered += 1  # the server died mid-request: an "info" outcome
                return


async def _load_until_killed(
    server: ServerProcess, symbol: str, logs: list[Log], seed: int
) -> None:
    rng = random.Random(seed)
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(_trade(server.url, symbol, log, random.Random(rng.random()), stop))
        for log in logs
    ]
    await asyncio.sleep(rng.uniform(0.5, 2.5))
    server.kill()  # kill -9 in the middle of the traffic
    stop.set()
    await asyncio.gather(*workers)


def _state(url: str, symbol: str, logs: list[Log]) -> dict[str, Any]:
    """Everything a client can see of the symbol: book, trades and each trader's orders."""
    with httpx.Client(base_url=url, timeout=10) as client:
        state: dict[str, Any] = {
            "book": client.get(f"/v1/book/{symbol}", params={"depth": 1000}).json(),
            "trades": client.get(f"/v1/trades/{symbol}", params={"limit": 1000}).json(),
        }
        for log in logs:
            headers = {"Authorization": f"Bearer {log.key}"}
            orders = client.get(
                "/v1/orders", params={"symbol": symbol, "limit": 1000}, headers=headers
            ).json()
            for order in orders:  # the full order, with its fills
                detail = client.get(f"/v1/orders/{order['order_id']}", headers=headers)
                order["fills"] = detail.json()["fills"]
            state[log.key] = orders
    return state


def _check_nothing_acknowledged_is_lost(state: dict[str, Any], logs: list[Log]) -> None:
    for log in logs:
        held = {order["client_order_id"]: order for order in state[log.key]}
        assert len(held) < 1000, "a trader's orders must fit in one page for this check"
        for client_order_id, acked in log.acked.items():
            order = held.get(client_order_id)
            assert order is not None, f"acknowledged order lost: {acked}"
            for name in (
                "order_id",
                "symbol",
                "side",
                "type",
                "price",
                "quantity",
                "time_in_force",
            ):
                assert order[name] == acked[name], (name, acked, order)
            assert Decimal(order["filled_quantity"]) >= Decimal(acked["filled_quantity"])
            if acked["status"] in CLOSED:
                for name in ("status", "reason", "filled_quantity", "canceled_quantity"):
                    assert order[name] == acked[name], (name, acked, order)
        for order_id, acked in log.cancels.items():
            order = next(o for o in state[log.key] if o["order_id"] == order_id)
            assert (order["status"], order["reason"]) == ("canceled", "user_canceled"), order
            assert order["canceled_quantity"] == acked["canceled_quantity"]
        unexpected = set(held) - set(log.asked)
        assert not unexpected, f"orders nobody asked for: {unexpected}"


def _check_whole_commands_only(state: dict[str, Any], logs: list[Log]) -> None:
    resting: Counter[tuple[str, str]] = Counter()
    for log in logs:
        for order in state[log.key]:
            quantity = Decimal(order["quantity"])
            filled = Decimal(order["filled_quantity"])
            remaining = Decimal(order["remaining_quantity"])
            assert filled + remaining + Decimal(order["canceled_quantity"]) == quantity, order
            assert sum(Decimal(fill["quantity"]) for fill in order["fills"]) == filled, order
            if remaining:
                resting[(order["side"], order["price"])] += remaining
    book = state["book"]
    for side, levels in (("buy", book["bids"]), ("sell", book["asks"])):
        for price, quantity, _count in levels:
            assert resting.pop((side, price)) == Decimal(quantity), (side, price)
    assert not resting, f"open orders missing from the book: {resting}"
    if book["bids"] and book["asks"]:
        assert Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0]), "crossed book"


def test_kill_9_under_load_loses_no_acknowledged_command(fresh_pg_url: str, tmp_path: Path) -> None:
    env = {
        "ME_DATABASE_URL": fresh_pg_url,
        "ME_DATA_DIR": str(tmp_path),
        "ME_SNAPSHOT_EVERY_COMMANDS": "150",  # snapshots are taken, and recovered from, too
    }
    cli("migrate", env=env)
    _, admin_key = create_account("sre", "admin", env)
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        for round_number in range(ROUNDS):
            symbol = f"CRASH{round_number}-USD"
            logs = [
                Log(create_account(f"t{round_number}-{w}", "trader", env)[1])
                for w in range(WORKERS)
            ]
            server.start()
            created = httpx.post(
                f"{server.url}/v1/admin/instruments",
                headers={"Authorization": f"Bearer {admin_key}"},
                json={"symbol": symbol, "tick_size": "1", "lot_size": "1", "min_quantity": "1",
                      "max_quantity": "1000"},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            asyncio.run(_load_until_killed(server, symbol, logs, seed=round_number))
            assert sum(len(log.acked) for log in logs) > 20, "the load did not get going"

            server.start()
            first = _state(server.url, symbol, logs)
            _check_nothing_acknowledged_is_lost(first, logs)
            _check_whole_commands_only(first, logs)

            server.kill()
            server.start()
            assert _state(server.url, symbol, logs) == first, "a second restart changed the state"
            server.kill()
    finally:
        server.kill()


@pytest.mark.parametrize("graceful", [True, False])
def test_restart_on_the_embedded_default_keeps_the_book(tmp_path: Path, graceful: bool) -> None:
    env = {"ME_DATA_DIR": str(tmp_path)}
    _, admin_key = create_account("sre", "admin", env)
    _, trader_key = create_account("trader", "trader", env)
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        server.start()
        admin = {"Authorization": f"Bearer {admin_key}"}
        trader = {"Authorization": f"Bearer {trader_key}"}
        instrument = {"symbol": "ETH-USD", "tick_size": "0.1", "lot_size": "0.01",
                      "min_quantity": "0.01", "max_quantity": "100"}  # fmt: skip
        assert (
            httpx.post(
                f"{server.url}/v1/admin/instruments", headers=admin, json=instrument
            ).status_code
            == 201
        )
        for price in ("10.1", "10.2", "10.3"):
            body = {
                "symbol": "ETH-USD",
                "side": "buy",
                "type": "limit",
                "price": price,
                "quantity": "1.25",
            }
            assert (
                httpx.post(f"{server.url}/v1/orders", headers=trader, json=body).status_code == 201
            )
        before = httpx.get(f"{server.url}/v1/book/ETH-USD").json()
        server.stop() if graceful else server.kill()
        server.start()
        assert httpx.get(f"{server.url}/v1/book/ETH-USD").json() == before
    finally:
        server.kill()
