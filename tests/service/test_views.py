"""Views: the average fill price, exact or rounded half-even to 8 places on any tick grid."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from matching_engine.core import NewOrder, Order, OrderType, Side
from matching_engine.views import average_price, plain

TICKS = st.sampled_from(
    [Decimal(text) for text in ("0.01", "0.5", "1", "25", "0.001", "1E-8", "3E-9", "0.0000001")]
)


def order_filled(filled: int, notional: int) -> Order:
    order = Order(1, NewOrder("account", "AV-USD", Side.BUY, OrderType.LIMIT, filled or 1, 1))
    order.filled, order.notional = filled, notional
    return order


def reference(notional: int, filled: int, tick: Decimal) -> Decimal:
    """The definition: the exact average in ticks, times the tick, rounded half-even."""
    average = Fraction(notional, filled)
    exact = Decimal(average.numerator) * tick / Decimal(average.denominator)
    return plain(exact.quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN))


@given(
    fills=st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**4)), min_size=1, max_size=4),
    tick=TICKS,
)
def test_the_average_price_is_the_rounded_exact_average(
    fills: list[tuple[int, int]], tick: Decimal
) -> None:
    filled = sum(quantity for _, quantity in fills)
    notional = sum(price * quantity for price, quantity in fills)
    assert average_price(order_filled(filled, notional), tick) == reference(notional, filled, tick)
    # Equal and written alike: no exponent, no trailing zeros.
    assert str(average_price(order_filled(filled, notional), tick)) == str(
        reference(notional, filled, tick)
    )


def test_an_order_without_fills_has_no_average_price() -> None:
    assert average_price(order_filled(0, 0), Decimal("0.01")) is None


def test_a_whole_number_of_ticks_on_a_grid_finer_than_8_places_is_rounded() -> None:
    # 7 ticks of 3e-9 is 2.1e-8: on the 8-place grid that is 2e-8, not the exact value.
    assert average_price(order_filled(1, 7), Decimal("3E-9")) == Decimal("2E-8")
