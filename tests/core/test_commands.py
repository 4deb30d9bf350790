"""A new order is a value, compiled or not: equal by its fields, hashable, printable, picklable."""

from __future__ import annotations

import pickle

from matching_engine.core import CancelOrder, NewOrder, stamped

from .helpers import limit


def test_a_new_order_equals_a_new_order_with_the_same_fields() -> None:
    order = limit("a", "buy", 5, 100, client_order_id="abc-1", timestamp=3)
    twin = limit("a", "buy", 5, 100, client_order_id="abc-1", timestamp=3)

    assert twin == order
    assert not twin != order  # noqa: SIM202 (the operator itself is under test)
    assert hash(twin) == hash(order)
    assert twin != limit("a", "buy", 5, 100, client_order_id="abc-1", timestamp=4)
    assert order != CancelOrder("a", 1, timestamp=3)


def test_a_new_order_survives_pickling_field_for_field() -> None:
    order = limit("a", "sell", 7, 101, tif="ioc", timestamp=9)

    copy = pickle.loads(pickle.dumps(order))

    assert copy == order
    assert copy.time_in_force is order.time_in_force
    assert copy.side is order.side


def test_a_new_order_prints_its_fields_in_order() -> None:
    text = repr(limit("a", "buy", 5, 100, timestamp=3))

    assert text.startswith("NewOrder(account='a', symbol=")
    assert text.endswith("client_order_id=None, timestamp=3)")


def test_stamping_keeps_every_field_but_the_time() -> None:
    order = limit("a", "buy", 5, 100, client_order_id="abc-1", timestamp=3)

    copy = stamped(order, 42)

    assert isinstance(copy, NewOrder)
    assert copy.timestamp == 42
    assert copy.same_parameters(order)
    assert copy.client_order_id == order.client_order_id
