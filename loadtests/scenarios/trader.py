"""A trader, for Locust: orders around the mid, cancels and amends of its own, reads.

Each simulated trader takes the next API key (round robin over ``ME_LOCUST_KEYS``) and, once
started, reads the instrument's tick and lot sizes and the mid of the book. Then, between
``ME_LOCUST_WAIT`` seconds of thinking, it does one of (by weight):

- place a limit order (10): most rest 1 to 20 ticks behind the mid, ``ME_LOCUST_CROSSING`` of
  them (default 0.3) cross it by 1 to 3 ticks; some carry a ``client_order_id``;
- cancel one of its open orders (4), amend one (2: a tick closer or a larger quantity);
- read the book (3), its open orders (2, and forget the ones no longer open), one order (1) or
  its fills (1);
- place a small market order (1).

Requests are named by their route (``/v1/orders/[id]``) so that ids do not split the statistics.
Answers are checked: 429 (rate limited) and 503 (overloaded, read-only, unavailable) are the
degradations the engine is designed to give under pressure, so they count as successes and are
tallied separately; a 409 on a cancel or an amend means the order was filled or canceled
meanwhile, which a real trader meets too. Anything else unexpected, a 500 above all, is a failure.

When Locust quits, the exit code says whether the run met its thresholds: at most
``ME_LOCUST_MAX_FAIL_RATIO`` of the requests failed (default 0.01) and the p99 of all requests
is at most ``ME_LOCUST_MAX_P99_MS`` (default 1000); and at least one request was made.

Configuration, all from the environment:

``ME_LOCUST_KEYS``
    trader API keys, comma-separated, or the path of a file with one key a line. Required.
``ME_LOCUST_SYMBOL``
    the symbol to trade (default ``BTC-USD``); an admin must have added it.
``ME_LOCUST_MID``
    the mid price to start from while the book is empty (default ``100``).
``ME_LOCUST_WAIT``
    the think time, ``MIN,MAX`` seconds (default ``0.2,1.0``).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections import Counter
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

__all__ = ["DEGRADED", "Trader", "load_keys"]

log = logging.getLogger(__name__)

DEGRADED: Counter[int] = Counter()  # expected degradations (429, 503) by status
_DEGRADATIONS = frozenset({429, 503})
_OPEN = frozenset({"new", "partially_filled"})


def load_keys(value: str | None = None) -> list[str]:
    """The keys in ``value`` (default ``ME_LOCUST_KEYS``): comma-separated, or a file's lines."""
    value = os.environ.get("ME_LOCUST_KEYS", "") if value is None else value
    if value and Path(value).is_file():
        parts = Path(value).read_text().splitlines()
    else:
        parts = value.split(",")
    return [part.strip() for part in parts if part.strip() and not part.startswith("#")]


def _wait_bounds() -> tuple[float, float]:
    low, _, high = os.environ.get("ME_LOCUST_WAIT", "0.2,1.0").partition(",")
    return float(low), float(high or low)


SYMBOL = os.environ.get("ME_LOCUST_SYMBOL", "BTC-USD")
START_MID = Decimal(os.environ.get("ME_LOCUST_MID", "100"))
CROSSING = float(os.environ.get("ME_LOCUST_CROSSING", "0.3"))
MAX_FAIL_RATIO = float(os.environ.get("ME_LOCUST_MAX_FAIL_RATIO", "0.01"))
MAX_P99_MS = float(os.environ.get("ME_LOCUST_MAX_P99_MS", "1000"))
_key_numbers = itertools.count()


def _check(response: Any, ok: tuple[int, ...], expected: tuple[int, ...] = ()) -> bool:
    """Mark the answer (a ``catch_response`` context); True only when its status is in ``ok``."""
    status = response.status_code
    if status in ok:
        response.success()
        return True
    if status in _DEGRADATIONS:
        DEGRADED[status] += 1
        response.success()
    elif status in expected:
        response.success()
    elif status == 0:
        response.failure(f"no answer: {getattr(response, 'error', None)!r}")
    else:
        response.failure(f"{status}: {(response.text or '')[:200]}")
    return False


class Trader(FastHttpUser):
    """One trader with one API key, trading ``ME_LOCUST_SYMBOL``."""

    wait_time = between(*_wait_bounds())

    def on_start(self) -> None:
        keys = load_keys()
        if not keys:
            raise RuntimeError("set ME_LOCUST_KEYS to trader keys (comma-separated, or a file)")
        self.key = keys[next(_key_numbers) % len(keys)]
        self.auth = {"Authorization": f"Bearer {self.key}"}
        self.symbol = SYMBOL
        self.tick, self.lot, self.min_quantity = Decimal("0.01"), Decimal("0.001"), Decimal(0)
        self.mid = START_MID
        self.open_orders: dict[str, tuple[Decimal, Decimal]] = {}  # id -> (price, quantity)
        with self.client.get(
            "/v1/instruments", name="/v1/instruments", catch_response=True
        ) as response:
            if _check(response, (200,)):
                for instrument in response.json():
                    if instrument["symbol"] == self.symbol:
                        self.tick = Decimal(instrument["tick_size"])
                        self.lot = Decimal(instrument["lot_size"])
                        self.min_quantity = Decimal(instrument["min_quantity"])
                        break
                else:
                    response.failure(f"{self.symbol} is not an instrument")
        self.read_book()

    # -- helpers ----------------------------------------------------------------------------

    def _price(self, ticks_from_mid: int) -> str:
        mid = (self.mid / self.tick).to_integral_value() * self.tick
        return str(max(self.tick, mid + ticks_from_mid * self.tick))

    def _quantity(self, lots_low: int, lots_high: int) -> Decimal:
        quantity = self.lot * random.randint(lots_low, lots_high)
        if quantity < self.min_quantity:
            quantity = (self.min_quantity / self.lot).to_integral_value(ROUND_DOWN) * self.lot
            quantity = max(quantity, self.min_quantity)
        return quantity

    def _place(self, body: dict[str, Any], name: str) -> None:
        with self.client.post(
            "/v1/orders", json=body, headers=self.auth, name=name, catch_response=True
        ) as response:
            if _check(response, (200, 201)):
                order = response.json()
                if order["status"] in _OPEN:
                    self.open_orders[order["order_id"]] = (
                        Decimal(order["price"] or 0),
                        Decimal(order["quantity"]),
                    )

    # -- tasks ------------------------------------------------------------------------------

    @task(10)
    def place_limit_order(self) -> None:
        side = random.choice(("buy", "sell"))
        sign = 1 if side == "buy" else -1
        if random.random() < CROSSING:
            ticks = sign * random.randint(1, 3)  # through the mid: it trades if there is depth
        else:
            ticks = -sign * random.randint(1, 20)
        body: dict[str, Any] = {
            "symbol": self.symbol,
            "side": side,
            "type": "limit",
            "price": self._price(ticks),
            "quantity": str(self._quantity(1, 100)),
        }
        if random.random() < 0.2:
            body["client_order_id"] = f"lc-{random.getrandbits(64):016x}"
        self._place(body, "/v1/orders [limit]")

    @task(1)
    def place_market_order(self) -> None:
        body = {
            "symbol": self.symbol,
            "side": random.choice(("buy", "sell")),
            "type": "market",
            "quantity": str(self._quantity(1, 10)),
        }
        self._place(body, "/v1/orders [market]")

    @task(4)
    def cancel_order(self) -> None:
        if not self.open_orders:
            return
        order_id = random.choice(list(self.open_orders))
        self.open_orders.pop(order_id)
        with self.client.delete(
            f"/v1/orders/{order_id}",
            headers=self.auth,
            name="/v1/orders/[id]",
            catch_response=True,
        ) as response:
            _check(response, (200,), expected=(409,))

    @task(2)
    def amend_order(self) -> None:
        if not self.open_orders:
            return
        order_id = random.choice(list(self.open_orders))
        price, quantity = self.open_orders[order_id]
        if random.random() < 0.5 and price:
            closer = -1 if price > self.mid else 1
            body = {"price": str(max(self.tick, price + closer * self.tick))}
        else:
            body = {"quantity": str(quantity + self._quantity(1, 10))}
        with self.client.patch(
            f"/v1/orders/{order_id}",
            json=body,
            headers=self.auth,
            name="/v1/orders/[id]",
            catch_response=True,
        ) as response:
            if _check(response, (200,), expected=(409,)):
                order = response.json()
                if order["status"] in _OPEN:
                    self.open_orders[order_id] = (
                        Decimal(order["price"] or 0),
                        Decimal(order["quantity"]),
                    )
                else:
                    self.open_orders.pop(order_id, None)
            elif response.status_code == 409:
                self.open_orders.pop(order_id, None)

    @task(3)
    def read_book(self) -> None:
        with self.client.get(
            f"/v1/book/{self.symbol}?depth=10", name="/v1/book/[symbol]", catch_response=True
        ) as response:
            if _check(response, (200,)):
                book = response.json()
                if book["bids"] and book["asks"]:
                    self.mid = (Decimal(book["bids"][0][0]) + Decimal(book["asks"][0][0])) / 2
                elif book["bids"] or book["asks"]:
                    self.mid = Decimal((book["bids"] or book["asks"])[0][0])

    @task(2)
    def read_open_orders(self) -> None:
        with self.client.get(
            f"/v1/orders?status=open&symbol={self.symbol}&limit=200",
            headers=self.auth,
            name="/v1/orders?status=open",
            catch_response=True,
        ) as response:
            if _check(response, (200,)):
                # Other traders on the same key may hold some of these: track what is open.
                self.open_orders = {
                    order["order_id"]: (Decimal(order["price"] or 0), Decimal(order["quantity"]))
                    for order in response.json()
                }

    @task(1)
    def read_one_order(self) -> None:
        if not self.open_orders:
            return
        order_id = random.choice(list(self.open_orders))
        with self.client.get(
            f"/v1/orders/{order_id}",
            headers=self.auth,
            name="/v1/orders/[id]",
            catch_response=True,
        ) as response:
            _check(response, (200,))

    @task(1)
    def read_fills(self) -> None:
        with self.client.get(
            "/v1/fills?limit=50", headers=self.auth, name="/v1/fills", catch_response=True
        ) as response:
            _check(response, (200,))


def _exit_code_from_thresholds(environment: Environment, **_kwargs: Any) -> None:
    total = environment.stats.total
    p99 = total.get_response_time_percentile(0.99) if total.num_requests else 0
    problems = []
    if total.num_requests == 0:
        problems.append("no request was made")
    if total.fail_ratio > MAX_FAIL_RATIO:
        problems.append(f"{total.fail_ratio:.2%} of requests failed (at most {MAX_FAIL_RATIO:.2%})")
    if p99 > MAX_P99_MS:
        problems.append(f"p99 {p99} ms (at most {MAX_P99_MS:g} ms)")
    degraded = ", ".join(f"{n} x {status}" for status, n in sorted(DEGRADED.items())) or "none"
    log.info(
        "%d requests, %.2f%% failed, p99 %s ms; expected degradations: %s",
        total.num_requests,
        total.fail_ratio * 100,
        p99,
        degraded,
    )
    if problems:
        log.error("thresholds not met: %s", "; ".join(problems))
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0


events.quitting.add_listener(_exit_code_from_thresholds)  # type: ignore[no-untyped-call]
