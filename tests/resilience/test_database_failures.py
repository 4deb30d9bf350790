"""The engine when its database fails: gone, slow, or gone in the middle of a commit.

Every test runs the whole gateway in-process on a database of its own in a throwaway PostgreSQL
cluster, reached through a fault proxy (see :mod:`tests.resilience.dbharness`), with short
deadlines: the database breaker opens after 3 failures and tries again after 1 s, statements time
out after 0.5 s, commits after 1 s, requests after 2 s. What is durable is checked in the database
itself, past the proxy, and by restarting the engine on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import pytest_asyncio

from loadtests.throwaway import ThrowawayPostgres
from tests.api.factories import (
    Caller,
    assert_problem,
    create_admin,
    create_instrument,
    create_trader,
    order_body,
)
from tests.resilience.dbharness import (
    DEADLINES,
    Harness,
    Running,
    harness_on,
    migrated_cluster,
    timed,
    wait_for,
)

log = logging.getLogger(__name__)

RESET_S: float = DEADLINES["db_breaker_reset_s"]
DEADLINE_S: float = DEADLINES["request_deadline_s"]
FAST_S = 0.1  # what "at once" means for a refusal that needs no database
OPENS_WITHIN_S = 1.5  # three probes, a quarter of a second apart, that fail at once
RECOVERS_WITHIN_S = RESET_S + 1.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    with migrated_cluster() as server:
        yield server


@pytest_asyncio.fixture
async def harness(postgres: ThrowawayPostgres, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness_on(postgres, tmp_path / "data") as harness:
        yield harness


def assert_refused_fast(response: httpx.Response, seconds: float, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (503, code), response.text
    assert_problem(response, 503, code)
    assert int(response.headers["Retry-After"]) >= 1
    assert seconds < FAST_S, f"a {code} refusal took {seconds * 1000:.0f} ms"


Outage = Literal["proxy_down", "server_stopped"]


async def cut(harness: Harness, outage: Outage) -> None:
    if outage == "proxy_down":
        harness.proxy.set("down")
    else:
        await harness.stop_server()


async def restore(harness: Harness, outage: Outage) -> None:
    if outage == "proxy_down":
        harness.proxy.set("pass")
    else:
        await harness.start_server()


async def acknowledged_history(
    engine: Running, maker: Caller, taker: Caller, symbol: str
) -> dict[str, tuple[Caller, dict[str, Any]]]:
    """Orders, a trade and a cancel, all acknowledged; answer each order's final state and owner,
    by order id."""
    placed = {}
    for caller, fields in [
        (maker, {"side": "sell", "price": "101", "quantity": "1", "client_order_id": "ask"}),
        (maker, {"side": "buy", "price": "99", "quantity": "2", "client_order_id": "bid"}),
        (maker, {"side": "buy", "price": "98", "quantity": "1", "client_order_id": "gone"}),
        (taker, {"side": "buy", "price": "101", "quantity": "0.4", "client_order_id": "lift"}),
    ]:
        response = await engine.post_order(caller, symbol, **fields)
        assert response.status_code == 201, response.text
        placed[fields["client_order_id"]] = (caller, response.json()["order_id"])
    response = await engine.client.delete(f"/v1/orders/{placed['gone'][1]}", headers=maker.headers)
    assert response.status_code == 200, response.text
    return {
        order_id: (caller, await engine.order(caller, order_id))
        for caller, order_id in placed.values()
    }


# -- 1. the database is gone ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("outage", ["proxy_down", "server_stopped"])
async def test_database_outage_makes_the_engine_read_only_and_loses_nothing(
    harness: Harness, outage: Outage
) -> None:
    """Hypothesis: with no write in flight, the background probe alone opens the breaker within
    about a second of the database going away, and the engine turns read-only: a new order is
    refused with 503 ``read_only`` and Retry-After at once, while the book, the trades and the
    caller's open orders are still served from memory and /readyz stays 200. Once the database
    is back the engine returns to normal by itself within the reset timeout plus a second, and
    every acknowledged order is still there, in that engine and in one restarted on the database.
    """
    async with harness.serve() as engine:
        admin = await create_admin(engine.service)
        maker, taker = await create_trader(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        history = await acknowledged_history(engine, maker, taker, symbol)
        book = (await engine.client.get(f"/v1/book/{symbol}")).json()
        trades = (await engine.client.get(f"/v1/trades/{symbol}")).json()
        assert len(trades) == 1
        open_orders = (
            await engine.client.get("/v1/orders", params={"status": "open"}, headers=maker.headers)
        ).json()
        assert {o["client_order_id"] for o in open_orders} == {"ask", "bid"}

        # Watched from the start: stopping a server takes a while after it refused its clients.
        opening = asyncio.create_task(
            engine.wait_mode(admin, 5.0, mode="read_only", database="open")
        )
        await cut(harness, outage)
        opened_s = await opening
        assert opened_s < OPENS_WITHIN_S, f"read_only only after {opened_s:.2f} s"

        response, refused_s = await timed(engine.post_order(maker, symbol, client_order_id="new"))
        assert_refused_fast(response, refused_s, "read_only")
        assert (await engine.client.get(f"/v1/book/{symbol}")).json() == book
        assert (await engine.client.get(f"/v1/trades/{symbol}")).json() == trades
        response = await engine.client.get(
            "/v1/orders", params={"status": "open"}, headers=maker.headers
        )
        assert response.status_code == 200, response.text
        assert response.json() == open_orders
        ready = await engine.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["mode"] == "read_only"
        assert ready.json()["database"] == "open"

        await restore(harness, outage)
        recovered_s = await engine.wait_mode(
            admin, RECOVERS_WITHIN_S, mode="normal", database="closed"
        )
        response = await engine.post_order(maker, symbol, client_order_id="after")
        assert response.status_code == 201, response.text
        history[response.json()["order_id"]] = (maker, response.json())
        for order_id, (caller, order) in history.items():
            assert await engine.order(caller, order_id) == order

    async with harness.serve() as restarted:
        assert (await restarted.mode(admin))["mode"] == "normal"
        for order_id, (caller, order) in history.items():
            assert await restarted.order(caller, order_id) == order
        assert (await restarted.client.get(f"/v1/trades/{symbol}")).json() == trades

    log.info(
        "%s: read_only after %.2f s, refused in %.1f ms, normal %.2f s after the database returned",
        outage,
        opened_s,
        refused_s * 1000,
        recovered_s,
    )


@pytest.mark.asyncio
async def test_an_open_order_is_read_from_memory_while_the_database_is_down(
    harness: Harness,
) -> None:
    """Hypothesis: memory holds every open order exactly, and an order with nothing filled has
    no fills to look up, so GET /v1/orders/{id} of such an order answers 200 during an outage,
    as the book and the list of open orders do."""
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        response = await engine.post_order(trader, symbol, client_order_id="resting")
        assert response.status_code == 201, response.text
        order = response.json()
        harness.proxy.set("down")
        await engine.wait_mode(admin, 5.0, mode="read_only", database="open")

        response = await engine.client.get(
            f"/v1/orders/{order['order_id']}", headers=trader.headers
        )

        assert response.status_code == 200, response.text
        assert response.json() == order


@pytest.mark.asyncio
async def test_cancels_and_amends_are_refused_as_read_only_while_the_database_is_down(
    harness: Harness,
) -> None:
    """Hypothesis: read_only refuses every write with 503 ``read_only`` at once, so a cancel and
    an amend of an open order are refused exactly like a new order (and like DELETE /v1/orders,
    which already is)."""
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        response = await engine.post_order(trader, symbol, quantity="2")
        assert response.status_code == 201, response.text
        order_id = response.json()["order_id"]
        harness.proxy.set("down")
        await engine.wait_mode(admin, 5.0, mode="read_only", database="open")

        cancel, cancel_s = await timed(
            engine.client.delete(f"/v1/orders/{order_id}", headers=trader.headers)
        )
        amend, amend_s = await timed(
            engine.client.patch(
                f"/v1/orders/{order_id}", json={"quantity": "1"}, headers=trader.headers
            )
        )

        assert_refused_fast(cancel, cancel_s, "read_only")
        assert_refused_fast(amend, amend_s, "read_only")


# -- 2. SRE modes against the automatic read-only ---------------------------------------------


async def put_mode(engine: Running, admin: Caller, mode: str, reason: str) -> httpx.Response:
    return await engine.client.put(
        "/v1/admin/mode",
        json={"mode": mode, "symbol": None, "reason": reason},
        headers=admin.headers,
    )


async def audit_rows(harness: Harness, reason: str) -> list[Any]:
    return await harness.fetch("SELECT * FROM admin_audit WHERE reason = $1", reason)


@pytest.mark.asyncio
async def test_a_mode_set_during_an_outage_outlives_it(harness: Harness) -> None:
    """Hypothesis: an SRE can set cancel_only while the database is unreachable (its calls would
    hang until their deadline): the answer comes at once, from the local audit file, and shows
    the stricter automatic read_only with the manual cancel_only under it; the audit trail
    lists the entry at once. When the database returns the engine comes back in cancel_only,
    not normal: cancels work, new orders and amends are refused with ``cancel_only``; the entry
    reaches the admin_audit table, and a restarted engine, with or without the local file, is
    in cancel_only again."""
    reason = f"volatility {secrets.token_hex(4)}"
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        resting = []
        for price in ("99", "98"):
            response = await engine.post_order(trader, symbol, price=price)
            assert response.status_code == 201, response.text
            resting.append(response.json()["order_id"])
        harness.proxy.set("down")
        await engine.wait_mode(admin, 5.0, mode="read_only", database="open")
        harness.proxy.set("blackhole")  # from now on a database call waits for its deadline

        response, put_s = await timed(put_mode(engine, admin, "cancel_only", reason))

        assert response.status_code == 200, response.text
        # Anything that waited on the database would have taken its deadline at least.
        assert put_s < DEADLINES["db_statement_timeout_s"], f"PUT took {put_s:.3f} s"
        status = response.json()
        assert status["mode"] == "read_only"
        assert status["manual_mode"] == "cancel_only"
        assert status["database"] != "closed"
        trail = await engine.client.get("/v1/admin/audit", headers=admin.headers)
        assert trail.status_code == 200, trail.text
        entry = trail.json()[0]
        assert (entry["action"], entry["after"], entry["reason"], entry["actor"]) == (
            "mode.set",
            {"mode": "cancel_only"},
            reason,
            admin.account_id,
        )
        assert await audit_rows(harness, reason) == []  # so the trail came from the local file

        harness.proxy.set("pass")
        back_s = await engine.wait_mode(
            admin, RECOVERS_WITHIN_S + 1.0, mode="cancel_only", database="closed"
        )
        assert (await engine.mode(admin))["manual_mode"] == "cancel_only"
        canceled = await engine.client.delete(f"/v1/orders/{resting[0]}", headers=trader.headers)
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        response, refused_s = await timed(engine.post_order(trader, symbol))
        assert_refused_fast(response, refused_s, "cancel_only")
        amend = await engine.client.patch(
            f"/v1/orders/{resting[1]}", json={"quantity": "0.5"}, headers=trader.headers
        )
        assert_problem(amend, 503, "cancel_only")

        async def in_table() -> bool:
            return len(await audit_rows(harness, reason)) == 1

        await wait_for(in_table, 2.0, "the audit entry in the admin_audit table")

    async with harness.serve() as restarted:
        assert (await restarted.mode(admin))["mode"] == "cancel_only"
    async with harness.serve(data_dir=harness.data_dir.with_name("elsewhere")) as elsewhere:
        assert (await elsewhere.mode(admin))["mode"] == "cancel_only"
    log.info(
        "mode set in %.1f ms during the outage; cancel_only %.2f s after", put_s * 1000, back_s
    )


@pytest.mark.asyncio
async def test_a_mode_set_during_an_outage_survives_a_restart_before_the_database_returns(
    harness: Harness,
) -> None:
    """Hypothesis: a mode set while the database is down is durable in the local audit file
    alone; an engine stopped before the database returned, and started again once it is back,
    restores that mode from the file and copies the entry into the admin_audit table."""
    reason = f"maintenance {secrets.token_hex(4)}"
    async with harness.serve() as engine:
        admin = await create_admin(engine.service)
        harness.proxy.set("down")
        await engine.wait_mode(admin, 5.0, mode="read_only", database="open")
        response = await put_mode(engine, admin, "cancel_only", reason)
        assert response.status_code == 200, response.text
    assert await audit_rows(harness, reason) == []

    harness.proxy.set("pass")
    async with harness.serve() as restarted:
        status = await restarted.mode(admin)
        assert (status["mode"], status["manual_mode"]) == ("cancel_only", "cancel_only")
        assert len(await audit_rows(harness, reason)) == 1


# -- 3. the database is slow -------------------------------------------------------------------


def assert_whole(order: dict[str, Any], fields: dict[str, Any]) -> None:
    """The order is the one asked for, and its quantities add up."""
    for name in ("symbol", "side", "type", "price", "quantity", "client_order_id"):
        assert order[name] == fields[name], (name, order, fields)
    parts = ("filled_quantity", "remaining_quantity", "canceled_quantity")
    assert sum(Decimal(order[part]) for part in parts) == Decimal(order["quantity"]), order


@pytest.mark.asyncio
async def test_a_slow_database_answers_within_the_deadline_and_applies_nothing_by_half(
    harness: Harness,
) -> None:
    """Hypothesis: with 10 s of latency on every packet the commit deadline (1 s) fails the
    write, so a new order is answered 503 within the request deadline, never 2xx nor 500; the
    timeouts open the breaker, after which writes are refused as read_only at once. Without
    the latency the engine recovers by itself, and the order of the request that timed out
    either exists whole (a retry replays it) or not at all (a retry creates it), exactly once,
    also after a restart."""
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        slow = order_body(symbol, side="sell", price="105", quantity="3", client_order_id="slow")
        response = await engine.post_order(trader, symbol, client_order_id="before")
        assert response.status_code == 201, response.text

        harness.proxy.set("latency", latency_s=10.0)
        response, slow_s = await timed(
            engine.client.post("/v1/orders", json=slow, headers=trader.headers)
        )

        assert response.status_code == 503, response.text
        assert slow_s < DEADLINE_S + 1.0, f"the answer took {slow_s:.2f} s"
        assert "Retry-After" in response.headers
        slow_code = response.json()["code"]
        opened_s = slow_s + await engine.wait_mode(admin, 5.0, mode="read_only", database="open")
        refused, refused_s = await timed(engine.post_order(trader, symbol))
        assert_refused_fast(refused, refused_s, "read_only")

        harness.proxy.set("pass")
        recovered_s = await engine.wait_mode(
            admin, RECOVERS_WITHIN_S + 1.0, mode="normal", database="closed"
        )
        # A write settles a batch left in doubt before anything else is journaled.
        response = await engine.post_order(trader, symbol, client_order_id="after")
        assert response.status_code == 201, response.text
        found = await engine.orders_with(trader, "slow")
        assert len(found) <= 1, found
        for order in found:
            assert_whole(order, slow)
        retry = await engine.client.post("/v1/orders", json=slow, headers=trader.headers)
        if found:
            assert retry.status_code == 200, retry.text
            assert retry.headers["Idempotent-Replayed"] == "true"
            assert retry.json()["order_id"] == found[0]["order_id"]
        else:
            assert retry.status_code == 201, retry.text
        assert_whole(retry.json(), slow)
        assert await engine.orders_with(trader, "slow") == [retry.json()]

    async with harness.serve() as restarted:
        assert await restarted.orders_with(trader, "slow") == [retry.json()]
    log.info(
        "slow database: 503 %s after %.2f s, read_only %.2f s after the latency began, "
        "refused in %.1f ms, normal %.2f s after it ended; the timed-out order %s",
        slow_code,
        slow_s,
        opened_s,
        refused_s * 1000,
        recovered_s,
        "had been committed" if found else "was not committed",
    )


# -- 4. commands caught in a failing batch -----------------------------------------------------


@pytest.mark.asyncio
async def test_commands_caught_in_a_failing_batch_are_answered_503_and_never_doubled(
    harness: Harness,
) -> None:
    """Hypothesis: 50 orders with unique client_order_ids, placed concurrently in three waves
    while the database goes away in the middle of a group commit, are each answered 201 or
    503 and nothing else. The commit that was under way when the network went down completes
    on the server (commits stall there, as on a lost synchronous replica, until the outage
    begins), so the orders of that batch were answered 503 and exist anyway: once the database
    is back each of them is whole, and a retry with its client_order_id replays it (200,
    Idempotent-Replayed); every other 503 order does not exist and a retry creates it. Every
    201 order is there with the state it was acknowledged with, and each client_order_id ends
    up with exactly one order, also after a restart."""
    bodies = {
        f"c{i:02d}": order_body("", price=str(90 + i % 10), client_order_id=f"c{i:02d}")
        for i in range(50)
    }
    waves = [list(bodies)[:15], list(bodies)[15:35], list(bodies)[35:]]
    answers: dict[str, httpx.Response] = {}
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        settler = await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        for body in bodies.values():
            body["symbol"] = symbol

        async def place(wave: list[str]) -> None:
            responses = await asyncio.gather(
                *(
                    engine.client.post("/v1/orders", json=bodies[c], headers=trader.headers)
                    for c in wave
                )
            )
            answers.update(zip(wave, responses, strict=True))

        await place(waves[0])
        async with harness.commits_stall():
            second = asyncio.create_task(place(waves[1]))

            async def stalled() -> bool:
                return await harness.stalled_commits() > 0

            await wait_for(stalled, 2.0, "a group commit stalled on the server")
            harness.proxy.set("down")
            await second
        # The stall is over: the commit caught in it is durable, though its batch answered 503.
        await place(waves[2])
        await engine.wait_mode(admin, 5.0, mode="read_only", database="open")
        harness.proxy.set("pass")
        await engine.wait_mode(admin, RECOVERS_WITHIN_S + 1.0, mode="normal", database="closed")
        settled = await engine.post_order(settler, symbol)  # settles the batch left in doubt
        assert settled.status_code == 201, settled.text

        statuses = {coid: response.status_code for coid, response in answers.items()}
        assert set(statuses.values()) <= {201, 503}, statuses
        acknowledged = {c: r.json() for c, r in answers.items() if r.status_code == 201}
        refused = [c for c, r in answers.items() if r.status_code == 503]
        assert acknowledged, "no order was acknowledged before the outage"
        for coid, order in acknowledged.items():
            assert await engine.order(trader, order["order_id"]) == order, coid
        in_doubt = {}
        for coid in refused:
            found = await engine.orders_with(trader, coid)
            assert len(found) <= 1, found
            if found:
                assert_whole(found[0], bodies[coid])
                in_doubt[coid] = found[0]
        assert in_doubt, "no order of the batch caught mid-commit exists"
        for coid in refused:
            retry = await engine.client.post(
                "/v1/orders", json=bodies[coid], headers=trader.headers
            )
            if coid in in_doubt:
                assert retry.status_code == 200, retry.text
                assert retry.headers["Idempotent-Replayed"] == "true"
                assert retry.json()["order_id"] == in_doubt[coid]["order_id"]
            else:
                assert retry.status_code == 201, retry.text
            assert_whole(retry.json(), bodies[coid])
        final = await engine.all_orders(trader)
        assert sorted(order["client_order_id"] for order in final) == sorted(bodies)

    async with harness.serve() as restarted:
        assert await restarted.all_orders(trader) == final
    log.info(
        "failing batch: %d acknowledged, %d answered 503 of which %d were committed anyway",
        len(acknowledged),
        len(refused),
        len(in_doubt),
    )


async def journaled_client_order_ids(harness: Harness) -> set[str]:
    rows = await harness.fetch("SELECT command FROM journal WHERE kind = 'new_order'")
    return {json.loads(row["command"])["client_order_id"] for row in rows}


@pytest.mark.asyncio
async def test_a_commit_that_completes_after_its_doubt_was_settled_is_not_lost(
    harness: Harness,
) -> None:
    """Hypothesis: an in-doubt batch is settled against what the journal really holds. Here the
    commit of order x stalls on the server and the network drops under it, so x answers 503;
    x's transaction is still in progress (invisible to other sessions) while the engine goes on
    writing, and then completes. Whatever the engine decided meanwhile, it must end up showing
    exactly the orders the journal holds, every acknowledged order among them, and the same
    book as an engine restarted on that journal."""
    prices = {"before": "100", "x": "99", "y": "98"} | {f"z{i}": str(90 + i) for i in range(5)}
    async with harness.serve() as engine:
        admin, trader = await create_admin(engine.service), await create_trader(engine.service)
        symbol = await create_instrument(engine.service)
        answers: dict[str, int] = {}

        async def place(coid: str) -> int:
            response = await engine.post_order(
                trader, symbol, price=prices[coid], client_order_id=coid
            )
            answers[coid] = response.status_code
            return response.status_code

        async def stalled() -> bool:
            return await harness.stalled_commits() > 0

        assert await place("before") == 201
        async with harness.commits_stall():
            x = asyncio.create_task(place("x"))
            await wait_for(stalled, 2.0, "the commit of x stalled on the server")
            harness.proxy.set("down")
            assert await x == 503
            harness.proxy.set("pass")
            await engine.wait_mode(admin, RECOVERS_WITHIN_S + 1.0, mode="normal", database="closed")
            await place("y")
        # The stall is over: x's commit has completed, if nothing ended it before.
        for attempt in range(5):
            await engine.wait_mode(admin, RECOVERS_WITHIN_S + 1.0, mode="normal", database="closed")
            if await place(f"z{attempt}") == 201:
                break
        shown = {order["client_order_id"] for order in await engine.all_orders(trader)}
        book = (await engine.client.get(f"/v1/book/{symbol}")).json()

    journaled = await journaled_client_order_ids(harness)
    log.info("late commit: answers %s, shown %s, journaled %s", answers, shown, journaled)
    assert {coid for coid, status in answers.items() if status == 201} <= journaled
    assert shown == journaled
    async with harness.serve() as restarted:
        assert (await restarted.client.get(f"/v1/book/{symbol}")).json() == book
