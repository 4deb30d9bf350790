"""Snapshots: a restored engine is indistinguishable from the one that was saved."""

from __future__ import annotations

import random

from matching_engine.core import CancelOrder, MatchingEngine, NewOrder, Order, OrderBook
from matching_engine.core._book import EMPTY, BookSide, PriceLevel

from .helpers import SYMBOL, engine_with, instrument, limit, market


def _commands(count: int, seed: int) -> list[NewOrder | CancelOrder]:
    rng = random.Random(seed)
    commands: list[NewOrder | CancelOrder] = []
    for index in range(count):
        account = rng.choice(["alice", "bob", "carol"])
        roll = rng.random()
        if roll < 0.2 and index > 2:
            commands.append(CancelOrder(account, rng.randrange(2, index + 2)))
        elif roll < 0.3:
            commands.append(market(account, rng.choice(["buy", "sell"]), rng.randint(1, 30)))
        else:
            side = rng.choice(["buy", "sell"])
            price = 10_000 + rng.randint(-5, 5)
            commands.append(limit(account, side, rng.randint(1, 30), price, stp="cancel_oldest"))
    return commands


def test_restored_engine_answers_the_next_commands_identically() -> None:
    original = engine_with()
    commands = _commands(600, seed=3)
    for command in commands[:300]:
        original.submit(command)
    restored = MatchingEngine.restore(original.snapshot())
    assert restored.fingerprint() == original.fingerprint()
    assert restored.depth(SYMBOL, 100) == original.depth(SYMBOL, 100)
    for command in commands[300:]:
        assert repr(restored.submit(command)) == repr(original.submit(command))
    assert restored.fingerprint() == original.fingerprint()


def test_fingerprint_tells_different_books_apart() -> None:
    one, other = engine_with(), engine_with()
    one.submit(limit("alice", "buy", 5, 9_990))
    other.submit(limit("alice", "buy", 6, 9_990))
    assert one.fingerprint() != other.fingerprint()


def _order_fields(engine: MatchingEngine, order_id: int) -> tuple[object, ...] | None:
    order = engine.order(order_id)
    if order is None:
        return None
    level = None if order.level is None else (order.level.key, order.level.price)
    return (
        order.order_id, order.command, order.account, order.price, order.quantity, order.filled,
        order.remaining, order.notional, order.reason, order.updated_at, order.status, level,
    )  # fmt: skip


def test_every_remembered_order_and_its_command_restore_field_for_field() -> None:
    original = engine_with()
    original.submit(limit("dave", "buy", 3, 9_000, post_only=True, client_order_id="keep-1"))
    for command in _commands(300, seed=5):
        original.submit(command)

    restored = MatchingEngine.restore(original.snapshot())

    ids = range(1, original.sequence + 1)
    remembered = [_order_fields(original, order_id) for order_id in ids]
    assert [_order_fields(restored, order_id) for order_id in ids] == remembered
    assert sum(fields is not None for fields in remembered) > 200  # open and closed alike


def test_the_state_classes_built_from_python_code_are_whole() -> None:
    # Unpickling builds them through their constructors, and so may any caller: a compiled class
    # whose constructor skipped __init__ would have no attributes at all.
    order = Order(7, limit("alice", "buy", 5, 9_990))
    assert (order.order_id, order.remaining, order.filled, order.level) == (7, 5, 0, None)
    side = BookSide(-1)
    assert (side.levels, len(side.keys), side.best_key) == ({}, 0, EMPTY)
    level = PriceLevel(side, -9_990, 9_990)
    assert (level.side, level.key, level.quantity, level.count, len(level.orders)) == (
        side, -9_990, 0, 0, 0,
    )  # fmt: skip
    book = OrderBook(instrument(), 10)
    assert (book.trades.maxlen, book.last_price, book.bids.sign, book.asks.sign) == (
        10,
        None,
        -1,
        1,
    )
