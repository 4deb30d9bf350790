"""The checkers: pure functions from a history and the state read afterwards to findings.

``check_history`` is Jepsen's set checker for this engine: every acknowledged order must be held
afterwards with the parameters it was acknowledged with (``lost``, ``mismatched``), nothing may be
held that was never asked for or was definitely refused (``unexpected``, ``refused_but_present``),
and in-doubt requests may have gone either way (``recovered`` counts those that happened).

``book_problems`` checks that the orders and the book agree (whole commands only), and
``fingerprint`` computes, from what the REST API shows, the digest that
``MatchingEngine.fingerprint()`` computes inside the engine, so that the state a running engine
serves can be compared with what ``matching-engine replay`` rebuilds from the journal.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loadtests.chaos.history import Op

__all__ = ["HistoryCheck", "book_problems", "check_history", "fingerprint"]

CLOSED = frozenset({"filled", "canceled", "rejected"})
_SAME = ("order_id", "client_order_id", "symbol", "side", "type", "time_in_force")
_SAME_DECIMAL = ("price", "quantity")
_SAME_WHEN_CLOSED = ("status", "reason")
_SAME_DECIMAL_WHEN_CLOSED = ("filled_quantity", "canceled_quantity")

Order = Mapping[str, Any]


@dataclass
class HistoryCheck:
    acknowledged: int = 0  # orders answered 2xx
    acknowledged_cancels: int = 0
    lost: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    refused_but_present: list[str] = field(default_factory=list)
    in_doubt: int = 0  # orders with no definite answer
    recovered: int = 0  # of which the engine holds

    @property
    def passed(self) -> bool:
        return not (self.lost or self.mismatched or self.unexpected or self.refused_but_present)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _differences(acked: Order, held: Order) -> list[str]:
    wrong = [name for name in _SAME if acked.get(name) != held.get(name)]
    wrong += [n for n in _SAME_DECIMAL if _decimal(acked.get(n)) != _decimal(held.get(n))]
    if Decimal(held["filled_quantity"]) < Decimal(acked["filled_quantity"]):
        wrong.append("filled_quantity")
    if acked["status"] in CLOSED:
        wrong += [name for name in _SAME_WHEN_CLOSED if acked.get(name) != held.get(name)]
        wrong += [
            name
            for name in _SAME_DECIMAL_WHEN_CLOSED
            if name not in wrong and _decimal(acked.get(name)) != _decimal(held.get(name))
        ]
    return wrong


def _check_orders(actor: str, ops: list[Op], held: dict[str, Order], result: HistoryCheck) -> None:
    by_id: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.client_order_id is not None:
            by_id[op.client_order_id].append(op)
    for client_order_id, attempts in by_id.items():
        order = held.get(client_order_id)
        acked = next((op.body for op in attempts if op.outcome == "ok" and op.body), None)
        if acked is not None:
            result.acknowledged += 1
            if order is None:
                result.lost.append(f"{actor}: {client_order_id} acknowledged as {acked}")
            elif wrong := _differences(acked, order):
                result.mismatched.append(
                    f"{actor}: {client_order_id} differs in {wrong}: acked {acked}, held {order}"
                )
        elif all(op.definitely_not_done for op in attempts):
            if order is not None:
                codes = sorted({f"{op.status} {op.code}" for op in attempts})
                result.refused_but_present.append(
                    f"{actor}: {client_order_id} refused ({', '.join(codes)}) yet held: {order}"
                )
        else:
            result.in_doubt += 1
            result.recovered += order is not None
    for client_order_id in held.keys() - by_id.keys():
        result.unexpected.append(f"{actor}: order {client_order_id} was never asked for")


def _check_cancels(actor: str, ops: list[Op], held: Iterable[Order], result: HistoryCheck) -> None:
    by_order = {str(order["order_id"]): order for order in held}
    asked: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        asked[str(op.request["order_id"])].append(op)
    for order_id, attempts in asked.items():
        acked = next((op.body for op in attempts if op.outcome == "ok" and op.body), None)
        if acked is None:
            continue
        result.acknowledged_cancels += 1
        order = by_order.get(order_id)
        if order is None:
            result.lost.append(f"{actor}: canceled order {order_id} is gone")
        elif (order["status"], order["reason"]) != ("canceled", "user_canceled") or Decimal(
            order["canceled_quantity"]
        ) != Decimal(acked["canceled_quantity"]):
            result.mismatched.append(
                f"{actor}: cancel of {order_id} acked as {acked}, held {order}"
            )
    maybe = {
        oid for oid, attempts in asked.items() if not all(op.definitely_not_done for op in attempts)
    }
    for order_id, order in by_order.items():
        if order.get("reason") == "user_canceled" and order_id not in maybe:
            result.unexpected.append(f"{actor}: order {order_id} canceled by nobody's request")


def check_history(ops: Iterable[Op], final: Mapping[str, Sequence[Order]]) -> HistoryCheck:
    """Compare what the clients were told (``ops``) with each actor's orders read afterwards
    (``final``: actor -> every order of theirs the engine holds)."""
    result = HistoryCheck()
    by_actor: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind in ("order", "cancel"):
            by_actor[op.actor].append(op)
    for actor in sorted(by_actor.keys() | final.keys()):
        actor_ops = by_actor.get(actor, [])
        orders = final.get(actor, [])
        held = {str(o["client_order_id"]): o for o in orders if o.get("client_order_id")}
        _check_orders(actor, [op for op in actor_ops if op.kind == "order"], held, result)
        _check_cancels(actor, [op for op in actor_ops if op.kind == "cancel"], orders, result)
    return result


def book_problems(orders: Iterable[Order], book: Mapping[str, Any]) -> list[str]:
    """Quantities add up in every order, and the book is exactly the open orders, uncrossed."""
    problems = []
    resting: defaultdict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    counts: Counter[tuple[str, Decimal]] = Counter()
    for order in orders:
        quantity = Decimal(order["quantity"])
        filled, remaining = Decimal(order["filled_quantity"]), Decimal(order["remaining_quantity"])
        if filled + remaining + Decimal(order["canceled_quantity"]) != quantity:
            problems.append(f"quantities of order {order['order_id']} do not add up: {order}")
        if remaining:
            key = (order["side"], Decimal(order["price"]))
            resting[key] += remaining
            counts[key] += 1
    for side, levels in (("buy", book["bids"]), ("sell", book["asks"])):
        for price, quantity, count in levels:
            key = (side, Decimal(price))
            if (resting.pop(key, Decimal(0)), counts.pop(key, 0)) != (Decimal(quantity), count):
                problems.append(f"book level {side} {price} x {quantity} ({count}) disagrees")
    if resting:
        problems.append(f"open orders missing from the book: {dict(resting)}")
    if book["bids"] and book["asks"] and Decimal(book["bids"][0][0]) >= Decimal(book["asks"][0][0]):
        problems.append(f"crossed book: {book['bids'][0]} >= {book['asks'][0]}")
    return problems


@dataclass(frozen=True)
class SymbolState:
    """What the API shows of one instrument, enough for the engine's fingerprint."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    last_trade_price: str | None  # of the newest trade, None before the first
    open_orders: Sequence[Order]  # every open order of every account


def fingerprint(sequence: int, trade_count: int, symbols: Iterable[SymbolState]) -> str:
    """``MatchingEngine.fingerprint()`` of the engine whose API shows this state.

    The engine hashes its counters, then per symbol the last trade price and every live order in
    priority order (bids best first, then asks), all in integer ticks and lots. Orders at one
    price rest in the order they arrived, which is the order of their ids as long as nobody
    amends (the chaos load does not).
    """
    digest = hashlib.sha256(f"{sequence}:{trade_count + 1}\n".encode())
    for state in sorted(symbols, key=lambda s: s.symbol):

        def ticks(price: Any, state: SymbolState = state) -> int:
            return int(Decimal(str(price)) / state.tick_size)

        def lots(quantity: Any, state: SymbolState = state) -> int:
            return int(Decimal(str(quantity)) / state.lot_size)

        last = None if state.last_trade_price is None else ticks(state.last_trade_price)
        digest.update(f"{state.symbol}:{last}\n".encode())
        bids = [o for o in state.open_orders if o["side"] == "buy"]
        asks = [o for o in state.open_orders if o["side"] == "sell"]
        bids.sort(key=lambda o: (-ticks(o["price"]), int(o["order_id"])))
        asks.sort(key=lambda o: (ticks(o["price"]), int(o["order_id"])))
        for side in (bids, asks):
            for order in side:
                digest.update(
                    f"{order['order_id']},{ticks(order['price'])},{lots(order['quantity'])},"
                    f"{lots(order['filled_quantity'])},{lots(order['remaining_quantity'])};".encode()
                )
            digest.update(b"|")
    return digest.hexdigest()
