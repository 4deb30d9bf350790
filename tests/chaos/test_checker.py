"""The chaos checkers can fail: fed a history and a final state that disagree, they say so.

A checker that always passes proves nothing, so each finding the experiments rely on is produced
here from a synthetic history: an acknowledged order missing afterwards (lost), one held with other
parameters (mismatched), one nobody asked for (unexpected), a definitely refused one that happened
anyway, in-doubt ones that did or did not happen, and a book that disagrees with the orders. The
fingerprint computed from what the API shows is checked against the engine's own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from loadtests.chaos.check import SymbolState, book_problems, check_history, fingerprint
from loadtests.chaos.history import NOT_SENT, Op
from matching_engine.core import Trade
from tests.core.helpers import SYMBOL, engine_with, limit

TICK, LOT = Decimal("0.01"), Decimal("0.001")


def order(client_order_id: str, order_id: str, **changes: Any) -> dict[str, Any]:
    """An order as the API shows it: a resting buy of 1.5 at 100."""
    shown = {
        "order_id": order_id,
        "client_order_id": client_order_id,
        "symbol": "CHAOS-USD",
        "side": "buy",
        "type": "limit",
        "price": "100",
        "quantity": "1.5",
        "filled_quantity": "0",
        "remaining_quantity": "1.5",
        "canceled_quantity": "0",
        "status": "new",
        "reason": None,
        "time_in_force": "gtc",
    }
    shown.update(changes)
    return shown


def asked(
    client_order_id: str,
    *,
    status: int | None,
    body: dict[str, Any] | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Op:
    request = {
        "symbol": "CHAOS-USD",
        "side": "buy",
        "type": "limit",
        "price": "100.00",
        "quantity": "1.5",
        "time_in_force": "gtc",
        "client_order_id": client_order_id,
    }
    return Op("order", "trader0", request, 0.0, 0.1, status, code, body, error)


def test_an_acknowledged_order_missing_afterwards_is_lost() -> None:
    history = [
        asked("a", status=201, body=order("a", "2")),
        asked("b", status=201, body=order("b", "3")),
    ]

    check = check_history(history, {"trader0": [order("a", "2")]})

    assert check.acknowledged == 2
    assert len(check.lost) == 1
    assert check.lost[0].startswith("trader0: b acknowledged")
    assert not check.passed


def test_a_history_that_matches_the_state_passes() -> None:
    history = [asked("a", status=201, body=order("a", "2"))]
    # The order traded since it was acknowledged: fills only grow, and prices compare as decimals.
    later = order("a", "2", price="100.00", filled_quantity="0.5", remaining_quantity="1.0",
                  status="partially_filled")  # fmt: skip

    check = check_history(history, {"trader0": [later]})

    assert check.passed
    assert (check.acknowledged, check.lost, check.mismatched) == (1, [], [])


def test_an_order_held_with_other_parameters_or_undone_fills_is_mismatched() -> None:
    acked = order("a", "2", filled_quantity="0.5", remaining_quantity="1.0")
    history = [asked("a", status=201, body=acked)]

    for held in (order("a", "2", price="101"), order("a", "2", filled_quantity="0")):
        check = check_history(history, {"trader0": [held]})
        assert len(check.mismatched) == 1, held
        assert not check.passed


def test_a_closed_order_must_stay_as_it_closed() -> None:
    closed = order("a", "2", status="canceled", reason="ioc_remainder", remaining_quantity="0",
                   canceled_quantity="1.5")  # fmt: skip
    history = [asked("a", status=201, body=closed)]

    check = check_history(history, {"trader0": [order("a", "2")]})

    assert len(check.mismatched) == 1


def test_orders_nobody_asked_for_or_that_were_refused_must_not_exist() -> None:
    history = [
        asked("refused", status=503, code="read_only"),
        asked("invalid", status=422, code="invalid_tick"),
        asked("never-sent", status=None, error=NOT_SENT),
    ]
    held = [order(cid, str(n)) for n, cid in enumerate(["refused", "invalid", "never-sent", "x"])]

    check = check_history(history, {"trader0": held})

    assert len(check.refused_but_present) == 3
    assert len(check.unexpected) == 1
    assert not check.passed


def test_in_doubt_orders_may_have_happened_or_not() -> None:
    history = [
        asked("timed-out", status=None, error="TimeoutError"),
        asked("deadline", status=503, code="unavailable"),
        asked("reset", status=None, error="ConnectionResetError"),
    ]

    check = check_history(history, {"trader0": [order("timed-out", "2")]})

    assert check.passed
    assert (check.in_doubt, check.recovered) == (3, 1)


def test_an_acknowledged_cancel_must_hold_and_nobody_else_cancels() -> None:
    placed = [
        asked("a", status=201, body=order("a", "2")),
        asked("b", status=201, body=order("b", "3")),
    ]
    canceled = order("a", "2", status="canceled", reason="user_canceled", remaining_quantity="0",
                     canceled_quantity="1.5")  # fmt: skip
    cancel = Op("cancel", "trader0", {"order_id": "2"}, 0.0, 0.1, 200, None, canceled)

    undone = check_history([*placed, cancel], {"trader0": [order("a", "2"), order("b", "3")]})
    phantom = check_history(
        placed,
        {"trader0": [canceled, order("b", "3")]},
    )

    assert len(undone.mismatched) == 1
    assert undone.acknowledged_cancels == 1
    assert len(phantom.unexpected) == 1


def test_the_book_must_be_exactly_the_open_orders() -> None:
    orders = [order("a", "2"), order("b", "3", side="sell", price="101", quantity="2",
                                     remaining_quantity="2")]  # fmt: skip
    book = {"bids": [["100", "1.5", 1]], "asks": [["101", "2", 1]]}

    assert book_problems(orders, book) == []
    assert book_problems(orders, {"bids": [["100", "1", 1]], "asks": book["asks"]})
    assert book_problems(orders, {"bids": book["bids"], "asks": []})
    crossed = [order("a", "2", price="102"), orders[1]]
    assert book_problems(crossed, {"bids": [["102", "1.5", 1]], "asks": book["asks"]})
    leaky = [order("a", "2", remaining_quantity="1")]
    assert book_problems(leaky, {"bids": [["100", "1", 1]], "asks": []})


def test_the_fingerprint_from_the_api_view_is_the_engines() -> None:
    engine = engine_with()
    trades: list[Trade] = []
    for account, side, quantity, price in [
        ("alice", "buy", 1500, 10000),
        ("bob", "buy", 700, 10000),  # same price: behind alice
        ("alice", "buy", 300, 10010),
        ("carol", "sell", 2000, 10020),
        ("bob", "sell", 1000, 10000),  # trades with the best bids, partly fills alice
        ("carol", "sell", 400, 10030),
    ]:
        events = engine.submit(limit(account, side, quantity, price))
        trades += [event for event in events if isinstance(event, Trade)]
    shown = [
        {
            "order_id": str(o.order_id),
            "side": o.side.value,
            "price": str(o.price * TICK if o.price is not None else None),
            "quantity": str(o.quantity * LOT),
            "filled_quantity": str(o.filled * LOT),
            "remaining_quantity": str(o.remaining * LOT),
        }
        for account in ("alice", "bob", "carol")
        for o in engine.open_orders(account)
    ]
    last = str(trades[-1].price * TICK)

    computed = fingerprint(
        engine.sequence, engine.trade_count, [SymbolState(SYMBOL, TICK, LOT, last, shown)]
    )

    assert trades, "the scenario must trade"
    assert computed == engine.fingerprint()
    moved = [dict(shown[0], remaining_quantity="0.001"), *shown[1:]]
    assert (
        fingerprint(
            engine.sequence, engine.trade_count, [SymbolState(SYMBOL, TICK, LOT, last, moved)]
        )
        != engine.fingerprint()
    )
