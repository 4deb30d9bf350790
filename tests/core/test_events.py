"""Events are values: equal by class and fields, hashable, printable and picklable."""

from __future__ import annotations

import pickle

import pytest

from matching_engine.core import (
    CommandRejected,
    DuplicateOrder,
    ErrorCode,
    Event,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    Reason,
    Side,
    Trade,
)

from .helpers import instrument

ONE_OF_EACH: list[Event] = [
    InstrumentAdded(1, instrument()),
    OrderAccepted(2, 2),
    OrderRejected(3, 3, Reason.POST_ONLY_WOULD_CROSS),
    Trade(4, 1, "BTC-USD", 100, 5, Side.BUY, 4, 2, "taker", "maker", 1_700_000_000_000_000_000),
    OrderCanceled(5, 2, 3, Reason.USER_CANCELED),
    OrderAmended(6, 2, 101, 4, False),
    DuplicateOrder(7, 2),
    CommandRejected(8, ErrorCode.NOT_FOUND, 99),
]


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda event: type(event).__name__)
def test_an_event_equals_an_event_of_its_class_with_the_same_fields(event: Event) -> None:
    twin = pickle.loads(pickle.dumps(event))

    assert twin is not event
    assert twin == event
    assert not twin != event  # noqa: SIM202 (the operator itself is under test)
    assert hash(twin) == hash(event)
    assert len({event, twin}) == 1


def _another(value: object) -> object:
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | None):
        return (value or 0) + 1
    if isinstance(value, Side):
        return Side.SELL if value is Side.BUY else Side.BUY
    if isinstance(value, Reason | ErrorCode):
        return next(member for member in type(value) if member is not value)
    if isinstance(value, str):
        return value + "-other"
    return instrument("ETH-USD")


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda event: type(event).__name__)
def test_an_event_differs_when_one_field_does(event: Event) -> None:
    fields = type(event)._fields
    for position, name in enumerate(fields):
        values = [getattr(event, field) for field in fields]
        values[position] = _another(values[position])
        changed = type(event)(*values)

        assert changed != event, name
        assert not changed == event, name  # noqa: SIM201 (the operator itself is under test)


def test_events_of_different_classes_are_never_equal() -> None:
    assert OrderAccepted(1, 1) != DuplicateOrder(1, 1)
    assert OrderAccepted(1, 1) != (1, 1)


def test_an_event_prints_its_class_and_fields() -> None:
    assert repr(OrderAccepted(2, 3)) == "OrderAccepted(sequence=2, order_id=3)"
    assert repr(CommandRejected(4, ErrorCode.NOT_FOUND)) == (
        "CommandRejected(sequence=4, code=<ErrorCode.NOT_FOUND: 'not_found'>, order_id=None)"
    )


def test_fields_can_be_given_by_name() -> None:
    assert OrderCanceled(sequence=1, order_id=2, quantity=3, reason=Reason.IOC_REMAINDER) == (
        OrderCanceled(1, 2, 3, Reason.IOC_REMAINDER)
    )
