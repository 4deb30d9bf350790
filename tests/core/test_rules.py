"""One test per rule of the matching core, each asserting the exact events and resulting state.

Prices are in ticks (0.01) and quantities in lots (0.001); order ids are command sequence numbers,
and command 1 of every engine built by ``engine_with`` adds the instrument.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_engine.core import (
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    CommandRejected,
    DuplicateOrder,
    ErrorCode,
    InstrumentAdded,
    InvalidAmend,
    InvalidCommand,
    InvalidLot,
    InvalidTick,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    OrderType,
    QuantityOutOfRange,
    Reason,
    SelfTradePrevention,
    Trade,
    stamped,
)

from .helpers import (
    SYMBOL,
    depth,
    engine_with,
    events_of,
    instrument,
    kinds,
    limit,
    market,
    place,
    state,
    trade,
)

STP = Reason.SELF_TRADE_PREVENTED
ETH = "ETH-USD"


def engine_traded_at(price: int, band: object = 10) -> MatchingEngine:
    """An engine whose last trade (command 3) was at ``price``, with an empty book."""
    engine = engine_with(band=band)
    place(engine, limit("x", "sell", 1, price), limit("y", "buy", 1, price))
    assert engine.book(SYMBOL).last_price == price  # type: ignore[union-attr]
    assert depth(engine) == ([], [])
    return engine


# -- price-time priority ---------------------------------------------------------------------


def test_fifo_within_a_level() -> None:
    engine = engine_with()
    a, b, c = place(
        engine,
        limit("a", "sell", 5, 100),
        limit("b", "sell", 5, 100),
        limit("c", "sell", 5, 100),
    )

    assert events_of(engine, limit("d", "buy", 7, 100)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 5, (5, "d"), (a, "a")),
        trade(5, 2, 100, 2, (5, "d"), (b, "b")),
    ]
    assert state(engine, a) == ("filled", 5, 0, 0)
    assert state(engine, b) == ("partially_filled", 2, 3, 0)
    assert state(engine, c) == ("new", 0, 5, 0)
    assert state(engine, 5) == ("filled", 7, 0, 0)
    assert depth(engine) == ([], [(100, 8, 2)])


def test_trade_event_names_both_sides_and_carries_the_command_timestamp() -> None:
    engine = engine_with()
    place(engine, limit("a", "buy", 5, 100, timestamp=1))

    assert events_of(engine, limit("b", "sell", 2, 99, timestamp=7)) == [
        OrderAccepted(3, 3),
        Trade(
            sequence=3,
            trade_id=1,
            symbol=SYMBOL,
            price=100,
            quantity=2,
            taker_side="sell",
            taker_order_id=3,
            maker_order_id=2,
            taker_account="b",
            maker_account="a",
            timestamp=7,
        ),
    ]


def test_trade_happens_at_the_maker_price_for_a_buy_taker() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 100))

    assert events_of(engine, limit("b", "buy", 5, 105)) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 5, (3, "b"), (2, "s")),
    ]
    assert engine.book(SYMBOL).last_price == 100  # type: ignore[union-attr]


def test_trade_happens_at_the_maker_price_for_a_sell_taker() -> None:
    engine = engine_with()
    place(engine, limit("b", "buy", 5, 100))

    assert events_of(engine, limit("s", "sell", 5, 95)) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 5, (3, "s"), (2, "b"), side="sell"),
    ]


def test_buy_taker_above_several_asks_walks_levels_best_first() -> None:
    engine = engine_with()
    x, y, z = place(
        engine,
        limit("x", "sell", 3, 102),
        limit("y", "sell", 2, 100),
        limit("z", "sell", 4, 101),
    )

    assert events_of(engine, limit("t", "buy", 8, 105)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 2, (5, "t"), (y, "y")),
        trade(5, 2, 101, 4, (5, "t"), (z, "z")),
        trade(5, 3, 102, 2, (5, "t"), (x, "x")),
    ]
    assert state(engine, 5) == ("filled", 8, 0, 0)
    assert state(engine, x) == ("partially_filled", 2, 1, 0)
    assert depth(engine) == ([], [(102, 1, 1)])


def test_sell_taker_below_several_bids_walks_levels_best_first() -> None:
    engine = engine_with()
    x, y, z = place(
        engine,
        limit("x", "buy", 2, 98),
        limit("y", "buy", 3, 100),
        limit("z", "buy", 1, 99),
    )

    assert events_of(engine, limit("t", "sell", 5, 90)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 3, (5, "t"), (y, "y"), side="sell"),
        trade(5, 2, 99, 1, (5, "t"), (z, "z"), side="sell"),
        trade(5, 3, 98, 1, (5, "t"), (x, "x"), side="sell"),
    ]
    assert depth(engine) == ([(98, 1, 1)], [])


def test_partial_fill_leaves_the_remainder_resting_at_its_limit() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 3, 100))

    assert events_of(engine, limit("b", "buy", 5, 101)) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 3, (3, "b"), (2, "s")),
    ]
    assert state(engine, 3) == ("partially_filled", 3, 2, 0)
    assert depth(engine) == ([(101, 2, 1)], [])


def test_gtc_order_that_does_not_cross_rests() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 101))

    assert events_of(engine, limit("b", "buy", 5, 100, tif="gtc")) == [OrderAccepted(3, 3)]
    assert state(engine, 3) == ("new", 0, 5, 0)
    assert depth(engine) == ([(100, 5, 1)], [(101, 5, 1)])
    assert engine.open_orders("b") == [engine.order(3)]


def test_limit_order_defaults_to_gtc() -> None:
    assert limit("a", "buy", 5, 100).time_in_force == "gtc"


# -- time in force ---------------------------------------------------------------------------


def test_ioc_remainder_is_canceled_with_ioc_remainder() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 3, 100))

    assert events_of(engine, limit("b", "buy", 5, 100, tif="ioc")) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 3, (3, "b"), (2, "s")),
        OrderCanceled(3, 3, 2, Reason.IOC_REMAINDER),
    ]
    assert state(engine, 3) == ("canceled", 3, 0, 2)
    assert engine.order(3).reason is Reason.IOC_REMAINDER  # type: ignore[union-attr]
    assert depth(engine) == ([], [])


def test_ioc_that_cannot_trade_is_canceled_whole() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 3, 101))

    assert events_of(engine, limit("b", "buy", 5, 100, tif="ioc")) == [
        OrderAccepted(3, 3),
        OrderCanceled(3, 3, 5, Reason.IOC_REMAINDER),
    ]
    assert state(engine, 3) == ("canceled", 0, 0, 5)
    assert depth(engine) == ([], [(101, 3, 1)])


def test_fok_fillable_only_across_several_levels_fills_whole() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 2, 100), limit("t", "sell", 3, 101))

    assert events_of(engine, limit("b", "buy", 5, 101, tif="fok")) == [
        OrderAccepted(4, 4),
        trade(4, 1, 100, 2, (4, "b"), (2, "s")),
        trade(4, 2, 101, 3, (4, "b"), (3, "t")),
    ]
    assert state(engine, 4) == ("filled", 5, 0, 0)
    assert depth(engine) == ([], [])


def test_fok_that_cannot_fill_whole_trades_nothing() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 2, 100), limit("t", "sell", 2, 101))

    assert events_of(engine, limit("b", "buy", 5, 101, tif="fok")) == [
        OrderAccepted(4, 4),
        OrderCanceled(4, 4, 5, Reason.FOK_UNFILLABLE),
    ]
    assert state(engine, 4) == ("canceled", 0, 0, 5)
    assert depth(engine) == ([], [(100, 2, 1), (101, 2, 1)])
    assert engine.book(SYMBOL).last_price is None  # type: ignore[union-attr]


def test_fok_whose_limit_stops_short_trades_nothing() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 2, 100), limit("t", "sell", 3, 102))

    assert events_of(engine, limit("b", "buy", 5, 101, tif="fok")) == [
        OrderAccepted(4, 4),
        OrderCanceled(4, 4, 5, Reason.FOK_UNFILLABLE),
    ]
    assert depth(engine) == ([], [(100, 2, 1), (102, 3, 1)])


def test_market_fok_that_cannot_fill_whole_trades_nothing() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 2, 100))

    assert events_of(engine, market("b", "buy", 3, tif="fok")) == [
        OrderAccepted(3, 3),
        OrderCanceled(3, 3, 3, Reason.FOK_UNFILLABLE),
    ]
    assert depth(engine) == ([], [(100, 2, 1)])


# -- market orders ---------------------------------------------------------------------------


def test_market_order_defaults_to_ioc() -> None:
    assert market("a", "buy", 5).time_in_force == "ioc"


def test_market_order_on_an_empty_book_is_canceled_with_no_liquidity() -> None:
    engine = engine_with()

    assert events_of(engine, market("b", "buy", 5)) == [
        OrderAccepted(2, 2),
        OrderCanceled(2, 2, 5, Reason.NO_LIQUIDITY),
    ]
    assert state(engine, 2) == ("canceled", 0, 0, 5)
    assert engine.open_order_count == 0


def test_market_order_partly_filled_cancels_the_rest_with_no_liquidity() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 2, 100), limit("t", "sell", 1, 150))

    assert events_of(engine, market("b", "buy", 5)) == [
        OrderAccepted(4, 4),
        trade(4, 1, 100, 2, (4, "b"), (2, "s")),
        trade(4, 2, 150, 1, (4, "b"), (3, "t")),
        OrderCanceled(4, 4, 2, Reason.NO_LIQUIDITY),
    ]
    assert state(engine, 4) == ("canceled", 3, 0, 2)
    assert depth(engine) == ([], [])
    assert engine.open_order_count == 0


def test_market_order_that_fills_completely_is_filled() -> None:
    engine = engine_with()
    place(engine, limit("b", "buy", 5, 100))

    assert events_of(engine, market("s", "sell", 4)) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 4, (3, "s"), (2, "b"), side="sell"),
    ]
    assert state(engine, 3) == ("filled", 4, 0, 0)
    assert depth(engine) == ([(100, 1, 1)], [])


# -- statically invalid orders ---------------------------------------------------------------


def test_market_order_with_a_price_is_invalid() -> None:
    with pytest.raises(InvalidCommand) as info:
        market("a", "buy", 5, price=100)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


def test_limit_order_without_a_price_is_invalid() -> None:
    with pytest.raises(InvalidCommand) as info:
        limit("a", "buy", 5, None)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


def test_market_order_cannot_be_gtc() -> None:
    with pytest.raises(InvalidCommand):
        market("a", "buy", 5, tif="gtc")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: limit("a", "buy", 5, 100, tif="ioc", post_only=True), id="limit-ioc"),
        pytest.param(lambda: limit("a", "buy", 5, 100, tif="fok", post_only=True), id="limit-fok"),
        pytest.param(lambda: market("a", "buy", 5, post_only=True), id="market"),
    ],
)
def test_post_only_is_only_allowed_on_a_gtc_limit_order(build: object) -> None:
    with pytest.raises(InvalidCommand):
        build()  # type: ignore[operator]


@pytest.mark.parametrize("quantity", [0, -1, True, 1.0])
def test_quantity_must_be_a_positive_integer_number_of_lots(quantity: object) -> None:
    with pytest.raises(InvalidCommand):
        limit("a", "buy", quantity, 100)  # type: ignore[arg-type]


def test_side_must_be_a_side_not_a_plain_string() -> None:
    with pytest.raises(InvalidCommand):
        NewOrder("a", SYMBOL, "buy", OrderType.LIMIT, 5, 100)  # type: ignore[arg-type]


# -- post-only -------------------------------------------------------------------------------


def test_post_only_order_that_would_cross_is_rejected_with_post_only_would_cross() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 100))

    assert events_of(engine, limit("b", "buy", 5, 100, post_only=True)) == [
        OrderRejected(3, 3, Reason.POST_ONLY_WOULD_CROSS)
    ]
    assert state(engine, 3) == ("rejected", 0, 0, 5)
    assert state(engine, 2) == ("new", 0, 5, 0)
    assert depth(engine) == ([], [(100, 5, 1)])


def test_post_only_order_that_does_not_cross_rests() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 101))

    assert events_of(engine, limit("b", "buy", 5, 100, post_only=True)) == [OrderAccepted(3, 3)]
    assert state(engine, 3) == ("new", 0, 5, 0)
    assert depth(engine) == ([(100, 5, 1)], [(101, 5, 1)])


# -- price band ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "price"), [("buy", 1101), ("sell", 1101), ("buy", 899), ("sell", 899)]
)
def test_limit_price_outside_the_band_is_rejected_with_price_band(side: str, price: int) -> None:
    engine = engine_traded_at(1000, band=10)

    assert events_of(engine, limit("a", side, 5, price)) == [OrderRejected(4, 4, Reason.PRICE_BAND)]
    assert state(engine, 4) == ("rejected", 0, 0, 5)
    assert depth(engine) == ([], [])


@pytest.mark.parametrize(
    ("side", "price"), [("buy", 1100), ("sell", 1100), ("buy", 900), ("sell", 900)]
)
def test_price_band_edges_are_inside(side: str, price: int) -> None:
    engine = engine_traded_at(1000, band=10)

    assert events_of(engine, limit("a", side, 5, price)) == [OrderAccepted(4, 4)]
    assert state(engine, 4) == ("new", 0, 5, 0)


def test_price_band_is_exact_for_a_fractional_percentage() -> None:
    engine = engine_traded_at(1000, band="2.5")

    assert kinds(events_of(engine, limit("a", "buy", 1, 975))) == ["OrderAccepted"]
    assert kinds(events_of(engine, limit("a", "buy", 1, 974))) == ["OrderRejected"]
    assert kinds(events_of(engine, limit("a", "sell", 1, 1025))) == ["OrderAccepted"]
    assert kinds(events_of(engine, limit("a", "sell", 1, 1026))) == ["OrderRejected"]


def test_price_band_follows_the_last_trade_price() -> None:
    engine = engine_traded_at(1000, band=10)
    place(engine, limit("x", "sell", 1, 1100), limit("y", "buy", 1, 1100))
    assert engine.book(SYMBOL).last_price == 1100  # type: ignore[union-attr]

    assert events_of(engine, limit("a", "buy", 1, 1210)) == [OrderAccepted(6, 6)]
    assert events_of(engine, limit("a", "buy", 1, 989)) == [OrderRejected(7, 7, Reason.PRICE_BAND)]


def test_no_price_band_before_the_first_trade() -> None:
    engine = engine_with(band=10)

    assert events_of(engine, limit("a", "buy", 1, 1)) == [OrderAccepted(2, 2)]
    assert events_of(engine, limit("a", "sell", 1, 1_000_000)) == [OrderAccepted(3, 3)]
    assert depth(engine) == ([(1, 1, 1)], [(1_000_000, 1, 1)])


# -- self-trade prevention -------------------------------------------------------------------


def test_stp_defaults_to_cancel_newest() -> None:
    assert limit("a", "buy", 5, 100).stp is SelfTradePrevention.CANCEL_NEWEST


def test_stp_cancel_newest_cancels_the_taker_remainder_after_fills_with_others() -> None:
    engine = engine_with()
    b, own, c = place(
        engine,
        limit("b", "sell", 2, 100),
        limit("a", "sell", 3, 100),
        limit("c", "sell", 4, 101),
    )

    assert events_of(engine, limit("a", "buy", 6, 101, stp="cancel_newest")) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 2, (5, "a"), (b, "b")),
        OrderCanceled(5, 5, 4, STP),
    ]
    assert state(engine, 5) == ("canceled", 2, 0, 4)
    assert state(engine, own) == ("new", 0, 3, 0)
    assert state(engine, c) == ("new", 0, 4, 0)
    assert depth(engine) == ([], [(100, 3, 1), (101, 4, 1)])


def test_stp_cancel_oldest_cancels_the_resting_order_and_goes_on_matching() -> None:
    engine = engine_with()
    own, b, c = place(
        engine,
        limit("a", "sell", 3, 100),
        limit("b", "sell", 2, 100),
        limit("c", "sell", 4, 101),
    )

    assert events_of(engine, limit("a", "buy", 4, 101, stp="cancel_oldest")) == [
        OrderAccepted(5, 5),
        OrderCanceled(5, own, 3, STP),
        trade(5, 1, 100, 2, (5, "a"), (b, "b")),
        trade(5, 2, 101, 2, (5, "a"), (c, "c")),
    ]
    assert state(engine, own) == ("canceled", 0, 0, 3)
    assert state(engine, b) == ("filled", 2, 0, 0)
    assert state(engine, c) == ("partially_filled", 2, 2, 0)
    assert state(engine, 5) == ("filled", 4, 0, 0)
    assert depth(engine) == ([], [(101, 2, 1)])


def test_stp_cancel_oldest_remainder_of_a_gtc_taker_rests() -> None:
    engine = engine_with()
    (own,) = place(engine, limit("a", "sell", 3, 100))

    assert events_of(engine, limit("a", "buy", 4, 100, stp="cancel_oldest")) == [
        OrderAccepted(3, 3),
        OrderCanceled(3, own, 3, STP),
    ]
    assert state(engine, 3) == ("new", 0, 4, 0)
    assert depth(engine) == ([(100, 4, 1)], [])


def test_stp_cancel_both_cancels_the_resting_order_and_the_taker_remainder() -> None:
    engine = engine_with()
    b, own, c = place(
        engine,
        limit("b", "sell", 2, 100),
        limit("a", "sell", 3, 100),
        limit("c", "sell", 4, 100),
    )

    assert events_of(engine, limit("a", "buy", 5, 100, stp="cancel_both")) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 2, (5, "a"), (b, "b")),
        OrderCanceled(5, own, 3, STP),
        OrderCanceled(5, 5, 3, STP),
    ]
    assert state(engine, own) == ("canceled", 0, 0, 3)
    assert state(engine, 5) == ("canceled", 2, 0, 3)
    assert state(engine, c) == ("new", 0, 4, 0)
    assert depth(engine) == ([], [(100, 4, 1)])


def test_stp_none_lets_an_account_trade_with_itself() -> None:
    engine = engine_with()
    (own,) = place(engine, limit("a", "sell", 3, 100))

    assert events_of(engine, limit("a", "buy", 3, 100, stp="none")) == [
        OrderAccepted(3, 3),
        trade(3, 1, 100, 3, (3, "a"), (own, "a")),
    ]
    assert state(engine, own) == ("filled", 3, 0, 0)
    assert state(engine, 3) == ("filled", 3, 0, 0)


def test_stp_is_decided_by_the_taker_not_the_maker() -> None:
    engine = engine_with()
    (own,) = place(engine, limit("a", "sell", 3, 100, stp="none"))

    assert events_of(engine, limit("a", "buy", 3, 100)) == [
        OrderAccepted(3, 3),
        OrderCanceled(3, 3, 3, STP),
    ]
    assert state(engine, own) == ("new", 0, 3, 0)


def test_stp_stops_a_market_order() -> None:
    engine = engine_with()
    place(engine, limit("a", "sell", 3, 100), limit("b", "sell", 3, 100))

    assert events_of(engine, market("a", "buy", 2)) == [
        OrderAccepted(4, 4),
        OrderCanceled(4, 4, 2, STP),
    ]
    assert depth(engine) == ([], [(100, 6, 2)])


def test_fok_stopped_by_self_trade_prevention_is_unfillable_and_trades_nothing() -> None:
    engine = engine_with()
    _, own, _ = place(
        engine,
        limit("b", "sell", 2, 100),
        limit("a", "sell", 3, 100),
        limit("c", "sell", 5, 101),
    )

    assert events_of(engine, limit("a", "buy", 5, 101, tif="fok")) == [
        OrderAccepted(5, 5),
        OrderCanceled(5, 5, 5, Reason.FOK_UNFILLABLE),
    ]
    assert state(engine, own) == ("new", 0, 3, 0)
    assert depth(engine) == ([], [(100, 5, 2), (101, 5, 1)])


def test_fok_with_cancel_oldest_fills_past_its_own_resting_orders() -> None:
    engine = engine_with()
    own, b = place(engine, limit("a", "sell", 3, 100), limit("b", "sell", 5, 101))

    assert events_of(engine, limit("a", "buy", 5, 101, tif="fok", stp="cancel_oldest")) == [
        OrderAccepted(4, 4),
        OrderCanceled(4, own, 3, STP),
        trade(4, 1, 101, 5, (4, "a"), (b, "b")),
    ]
    assert state(engine, 4) == ("filled", 5, 0, 0)
    assert depth(engine) == ([], [])


def test_fok_with_cancel_oldest_does_not_count_its_own_orders() -> None:
    engine = engine_with()
    own, _ = place(engine, limit("a", "sell", 3, 100), limit("b", "sell", 2, 100))

    assert events_of(engine, limit("a", "buy", 5, 100, tif="fok", stp="cancel_oldest")) == [
        OrderAccepted(4, 4),
        OrderCanceled(4, 4, 5, Reason.FOK_UNFILLABLE),
    ]
    assert state(engine, own) == ("new", 0, 3, 0)
    assert depth(engine) == ([], [(100, 5, 2)])


def test_fok_with_stp_none_counts_its_own_orders() -> None:
    engine = engine_with()
    own, b = place(engine, limit("a", "sell", 3, 100), limit("b", "sell", 2, 100))

    assert events_of(engine, limit("a", "buy", 5, 100, tif="fok", stp="none")) == [
        OrderAccepted(4, 4),
        trade(4, 1, 100, 3, (4, "a"), (own, "a")),
        trade(4, 2, 100, 2, (4, "a"), (b, "b")),
    ]


# -- amend -----------------------------------------------------------------------------------


def test_amend_lowering_quantity_at_the_same_price_keeps_priority() -> None:
    engine = engine_with()
    a, b = place(engine, limit("a", "buy", 5, 100), limit("b", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=3)) == [OrderAmended(4, a, 100, 3, True)]
    assert state(engine, a) == ("new", 0, 3, 0)
    assert engine.order(a).quantity == 3  # type: ignore[union-attr]
    assert depth(engine) == ([(100, 8, 2)], [])

    assert events_of(engine, limit("c", "sell", 3, 100)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 3, (5, "c"), (a, "a"), side="sell"),
    ]
    assert state(engine, a) == ("filled", 3, 0, 0)
    assert state(engine, b) == ("new", 0, 5, 0)


def test_amend_lowering_quantity_of_a_partially_filled_order_keeps_its_fills() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 2, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=4)) == [OrderAmended(4, a, 100, 4, True)]
    assert state(engine, a) == ("partially_filled", 2, 2, 0)
    assert depth(engine) == ([(100, 2, 1)], [])


def test_amend_raising_quantity_loses_priority() -> None:
    engine = engine_with()
    a, b = place(engine, limit("a", "buy", 5, 100), limit("b", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=6)) == [OrderAmended(4, a, 100, 6, False)]
    assert state(engine, a) == ("new", 0, 6, 0)
    assert depth(engine) == ([(100, 11, 2)], [])

    assert events_of(engine, limit("c", "sell", 5, 100)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 5, (5, "c"), (b, "b"), side="sell"),
    ]
    assert state(engine, a) == ("new", 0, 6, 0)


def test_amend_price_change_loses_priority() -> None:
    engine = engine_with()
    a, b = place(engine, limit("a", "buy", 5, 99), limit("b", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=100)) == [OrderAmended(4, a, 100, 5, False)]
    assert depth(engine) == ([(100, 10, 2)], [])

    assert events_of(engine, limit("c", "sell", 5, 100)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 5, (5, "c"), (b, "b"), side="sell"),
    ]
    assert state(engine, a) == ("new", 0, 5, 0)


def test_amend_lower_price_and_quantity_loses_priority() -> None:
    engine = engine_with()
    a, b = place(engine, limit("a", "buy", 5, 101), limit("b", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=100, quantity=4)) == [
        OrderAmended(4, a, 100, 4, False)
    ]
    assert depth(engine) == ([(100, 9, 2)], [])
    assert events_of(engine, limit("c", "sell", 5, 100))[1].maker_order_id == b  # type: ignore[union-attr]


def test_amend_into_a_cross_trades_at_once_at_the_maker_price() -> None:
    engine = engine_with()
    s, a = place(engine, limit("s", "sell", 3, 101), limit("a", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=102)) == [
        OrderAmended(4, a, 102, 5, False),
        trade(4, 1, 101, 3, (a, "a"), (s, "s")),
    ]
    assert state(engine, a) == ("partially_filled", 3, 2, 0)
    assert engine.order(a).price == 102  # type: ignore[union-attr]
    assert state(engine, s) == ("filled", 3, 0, 0)
    assert depth(engine) == ([(102, 2, 1)], [])


def test_amend_into_a_cross_that_fills_closes_the_order() -> None:
    engine = engine_with()
    s, a = place(engine, limit("s", "sell", 5, 101), limit("a", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=101, quantity=4)) == [
        OrderAmended(4, a, 101, 4, False),
        trade(4, 1, 101, 4, (a, "a"), (s, "s")),
    ]
    assert state(engine, a) == ("filled", 4, 0, 0)
    assert engine.open_orders("a") == []
    assert depth(engine) == ([], [(101, 1, 1)])


def test_amend_into_own_resting_order_is_stopped_by_self_trade_prevention() -> None:
    engine = engine_with()
    own, a = place(engine, limit("a", "sell", 3, 101), limit("a", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=101)) == [
        OrderAmended(4, a, 101, 5, False),
        OrderCanceled(4, a, 5, STP),
    ]
    assert state(engine, a) == ("canceled", 0, 0, 5)
    assert state(engine, own) == ("new", 0, 3, 0)
    assert depth(engine) == ([], [(101, 3, 1)])


@pytest.mark.parametrize("quantity", [1, 2])
def test_amend_to_a_quantity_not_above_the_filled_quantity_is_invalid_amend(quantity: int) -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 2, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=quantity)) == [
        CommandRejected(4, ErrorCode.INVALID_AMEND, a)
    ]
    assert state(engine, a) == ("partially_filled", 2, 3, 0)
    assert depth(engine) == ([(100, 3, 1)], [])


def test_amend_to_a_quantity_out_of_range_is_refused() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=1_000_001)) == [
        CommandRejected(3, ErrorCode.QUANTITY_OUT_OF_RANGE, a)
    ]
    assert state(engine, a) == ("new", 0, 5, 0)


def test_amend_needs_a_price_or_a_quantity() -> None:
    with pytest.raises(InvalidAmend) as info:
        AmendOrder("a", 2)
    assert info.value.code is ErrorCode.INVALID_AMEND


def test_amend_that_changes_nothing_keeps_priority() -> None:
    engine = engine_with()
    a, b = place(engine, limit("a", "buy", 5, 100), limit("b", "buy", 5, 100))

    assert events_of(engine, AmendOrder("a", a, price=100, quantity=5)) == [
        OrderAmended(4, a, 100, 5, True)
    ]
    assert depth(engine) == ([(100, 10, 2)], [])
    assert events_of(engine, limit("c", "sell", 5, 100)) == [
        OrderAccepted(5, 5),
        trade(5, 1, 100, 5, (5, "c"), (a, "a"), side="sell"),
    ]
    assert state(engine, b) == ("new", 0, 5, 0)


def test_amend_of_a_filled_order_is_order_not_open() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 5, 100))

    assert events_of(engine, AmendOrder("a", a, quantity=6)) == [
        CommandRejected(4, ErrorCode.ORDER_NOT_OPEN, a)
    ]
    assert state(engine, a) == ("filled", 5, 0, 0)


def test_amend_of_a_canceled_order_is_order_not_open() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    events_of(engine, CancelOrder("a", a))

    assert events_of(engine, AmendOrder("a", a, price=101)) == [
        CommandRejected(4, ErrorCode.ORDER_NOT_OPEN, a)
    ]
    assert state(engine, a) == ("canceled", 0, 0, 5)
    assert depth(engine) == ([], [])


def test_amend_of_another_accounts_order_is_not_found() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert events_of(engine, AmendOrder("b", a, quantity=1)) == [
        CommandRejected(3, ErrorCode.NOT_FOUND, a)
    ]
    assert state(engine, a) == ("new", 0, 5, 0)
    assert depth(engine) == ([(100, 5, 1)], [])


def test_amend_of_an_unknown_order_is_not_found() -> None:
    engine = engine_with()

    assert events_of(engine, AmendOrder("a", 99, quantity=1)) == [
        CommandRejected(2, ErrorCode.NOT_FOUND, 99)
    ]


def test_post_only_amend_into_a_cross_is_refused_and_leaves_the_order_unchanged() -> None:
    engine = engine_with()
    _, a, b = place(
        engine,
        limit("s", "sell", 5, 101),
        limit("a", "buy", 5, 100, post_only=True),
        limit("b", "buy", 5, 100),
    )

    assert events_of(engine, AmendOrder("a", a, price=101)) == [
        CommandRejected(5, ErrorCode.POST_ONLY_WOULD_CROSS, a)
    ]
    assert state(engine, a) == ("new", 0, 5, 0)
    assert engine.order(a).price == 100  # type: ignore[union-attr]
    assert depth(engine) == ([(100, 10, 2)], [(101, 5, 1)])
    # Still first in its level.
    assert events_of(engine, limit("c", "sell", 5, 100))[1].maker_order_id == a  # type: ignore[union-attr]
    assert state(engine, b) == ("new", 0, 5, 0)


def test_amend_out_of_the_price_band_is_refused() -> None:
    engine = engine_traded_at(1000, band=10)
    (a,) = place(engine, limit("a", "buy", 5, 950))

    assert events_of(engine, AmendOrder("a", a, price=899)) == [
        CommandRejected(5, ErrorCode.PRICE_BAND, a)
    ]
    assert state(engine, a) == ("new", 0, 5, 0)
    assert engine.order(a).price == 950  # type: ignore[union-attr]
    assert depth(engine) == ([(950, 5, 1)], [])
    assert events_of(engine, AmendOrder("a", a, price=900)) == [OrderAmended(6, a, 900, 5, False)]


# -- cancel ----------------------------------------------------------------------------------


def test_user_cancel_emits_user_canceled() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert events_of(engine, CancelOrder("a", a)) == [OrderCanceled(3, a, 5, Reason.USER_CANCELED)]
    assert state(engine, a) == ("canceled", 0, 0, 5)
    assert engine.order(a).reason is Reason.USER_CANCELED  # type: ignore[union-attr]
    assert depth(engine) == ([], [])
    assert engine.open_orders("a") == []


def test_cancel_of_a_partially_filled_order_cancels_only_the_remainder() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 2, 100))

    assert events_of(engine, CancelOrder("a", a)) == [OrderCanceled(4, a, 3, Reason.USER_CANCELED)]
    assert state(engine, a) == ("canceled", 2, 0, 3)


def test_admin_cancel_emits_admin_canceled() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert events_of(engine, CancelOrder(None, a)) == [
        OrderCanceled(3, a, 5, Reason.ADMIN_CANCELED)
    ]
    assert state(engine, a) == ("canceled", 0, 0, 5)
    assert depth(engine) == ([], [])


def test_cancel_of_a_filled_order_is_order_not_open() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 5, 100))

    assert events_of(engine, CancelOrder("a", a)) == [
        CommandRejected(4, ErrorCode.ORDER_NOT_OPEN, a)
    ]
    assert events_of(engine, CancelOrder(None, a)) == [
        CommandRejected(5, ErrorCode.ORDER_NOT_OPEN, a)
    ]
    assert state(engine, a) == ("filled", 5, 0, 0)


def test_cancel_of_a_canceled_order_is_order_not_open() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    events_of(engine, CancelOrder("a", a))

    assert events_of(engine, CancelOrder("a", a)) == [
        CommandRejected(4, ErrorCode.ORDER_NOT_OPEN, a)
    ]


def test_cancel_of_a_rejected_order_is_order_not_open() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 100))
    events_of(engine, limit("a", "buy", 5, 100, post_only=True))

    assert events_of(engine, CancelOrder("a", 3)) == [
        CommandRejected(4, ErrorCode.ORDER_NOT_OPEN, 3)
    ]


def test_cancel_of_another_accounts_order_is_not_found() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert events_of(engine, CancelOrder("b", a)) == [CommandRejected(3, ErrorCode.NOT_FOUND, a)]
    assert state(engine, a) == ("new", 0, 5, 0)
    assert depth(engine) == ([(100, 5, 1)], [])


def test_closed_order_of_another_account_is_not_found_rather_than_not_open() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    events_of(engine, CancelOrder("a", a))

    assert events_of(engine, CancelOrder("b", a)) == [CommandRejected(4, ErrorCode.NOT_FOUND, a)]
    assert events_of(engine, AmendOrder("b", a, quantity=1)) == [
        CommandRejected(5, ErrorCode.NOT_FOUND, a)
    ]


def test_cancel_of_an_unknown_id_is_not_found() -> None:
    engine = engine_with()

    assert events_of(engine, CancelOrder("a", 99)) == [CommandRejected(2, ErrorCode.NOT_FOUND, 99)]
    assert events_of(engine, CancelOrder(None, 99)) == [CommandRejected(3, ErrorCode.NOT_FOUND, 99)]


def test_every_order_a_command_closes_stays_readable_until_the_next_command() -> None:
    engine = MatchingEngine(closed_order_capacity=2)
    engine.submit(AddInstrument(instrument()))
    makers = place(engine, *(limit(f"m{i}", "sell", 1, 100 + i) for i in range(5)))

    events = events_of(engine, market("t", "buy", 5))  # closes five makers and the taker

    taker = events[0].order_id
    assert [state(engine, order_id)[0] for order_id in [*makers, taker]] == ["filled"] * 6
    events_of(engine, limit("a", "buy", 1, 50))
    # Between commands the history shrinks to its capacity: the two most recent closes.
    assert [engine.order(order_id) is not None for order_id in [*makers, taker]] == [
        False, False, False, False, True, True
    ]  # fmt: skip
    assert events_of(engine, CancelOrder("m0", makers[0])) == [
        CommandRejected(9, ErrorCode.NOT_FOUND, makers[0])
    ]  # forgotten: the service tells 409 from 404 with its read model


def _deep_level(engine: MatchingEngine, n: int = 300) -> list[int]:
    """``n`` asks at 100 from distinct accounts ``m0``, ``m1``...; order i has 1 + i % 3 lots."""
    return place(engine, *(limit(f"m{i}", "sell", 1 + i % 3, 100) for i in range(n)))


def test_cancel_in_the_middle_of_a_deep_level_keeps_the_fifo_order_of_the_others() -> None:
    engine = engine_with()
    ids = _deep_level(engine)
    middle = ids[150]

    assert events_of(engine, CancelOrder("m150", middle)) == [
        OrderCanceled(302, middle, 1, Reason.USER_CANCELED)
    ]
    survivors = ids[:150] + ids[151:]
    total = sum(1 + i % 3 for i in range(300)) - 1
    assert depth(engine) == ([], [(100, total, 299)])

    events = events_of(engine, market("t", "buy", total))
    assert [e.maker_order_id for e in events if isinstance(e, Trade)] == survivors
    assert depth(engine) == ([], [])


def test_cancelling_most_of_a_deep_level_keeps_fifo_and_exact_level_totals() -> None:
    engine = engine_with()
    ids = _deep_level(engine)
    doomed = range(50, 250)
    for i in doomed:
        (event,) = events_of(engine, CancelOrder(f"m{i}", ids[i]))
        assert event == OrderCanceled(engine.sequence, ids[i], 1 + i % 3, Reason.USER_CANCELED)

    kept = [i for i in range(300) if i not in doomed]
    total = sum(1 + i % 3 for i in kept)
    assert depth(engine) == ([], [(100, total, 100)])

    events = events_of(engine, market("t", "buy", total))
    assert [e.maker_order_id for e in events if isinstance(e, Trade)] == [ids[i] for i in kept]
    assert [e.quantity for e in events if isinstance(e, Trade)] == [1 + i % 3 for i in kept]


# -- cancel-all ------------------------------------------------------------------------------


def _two_symbols() -> MatchingEngine:
    """a: bid 5@100 BTC (2 filled, order 3), ask 2@200 BTC (4), bid 1@50 ETH (5); b: bid 4@100 BTC (6)."""
    engine = engine_with()
    assert events_of(engine, AddInstrument(instrument(ETH))) == [
        InstrumentAdded(2, instrument(ETH))
    ]
    place(
        engine,
        limit("a", "buy", 5, 100),
        limit("a", "sell", 2, 200),
        limit("a", "buy", 1, 50, symbol=ETH),
        limit("b", "buy", 4, 100),
        limit("c", "sell", 2, 100),
    )
    assert state(engine, 3) == ("partially_filled", 2, 3, 0)
    return engine


def test_cancel_all_cancels_every_open_order_of_the_account_on_every_symbol() -> None:
    engine = _two_symbols()

    events = events_of(engine, CancelAll("a"))
    assert sorted(events, key=lambda event: event.order_id) == [
        OrderCanceled(8, 3, 3, Reason.USER_CANCELED),
        OrderCanceled(8, 4, 2, Reason.USER_CANCELED),
        OrderCanceled(8, 5, 1, Reason.USER_CANCELED),
    ]
    assert engine.open_orders("a") == []
    assert state(engine, 6) == ("new", 0, 4, 0)
    assert depth(engine) == ([(100, 4, 1)], [])
    assert depth(engine, ETH) == ([], [])


def test_cancel_all_with_a_symbol_cancels_only_that_symbol() -> None:
    engine = _two_symbols()

    assert events_of(engine, CancelAll("a", ETH)) == [OrderCanceled(8, 5, 1, Reason.USER_CANCELED)]
    assert [o.order_id for o in engine.open_orders("a")] == [4, 3]
    assert depth(engine) == ([(100, 7, 2)], [(200, 2, 1)])
    assert depth(engine, ETH) == ([], [])


def test_cancel_all_with_nothing_open_emits_nothing() -> None:
    engine = _two_symbols()

    assert events_of(engine, CancelAll("c")) == []
    assert events_of(engine, CancelAll("nobody")) == []
    assert engine.open_order_count == 4


# -- idempotency -----------------------------------------------------------------------------


def test_same_client_order_id_and_parameters_is_a_duplicate_of_the_original() -> None:
    engine = engine_with()
    original = limit("a", "buy", 5, 100, client_order_id="abc-1")
    (a,) = place(engine, original)
    place(engine, limit("s", "sell", 2, 100))

    retry = limit("a", "buy", 5, 100, client_order_id="abc-1", tif="gtc", timestamp=99)
    assert events_of(engine, retry) == [DuplicateOrder(4, a)]
    assert engine.order(4) is None
    assert state(engine, a) == ("partially_filled", 2, 3, 0)
    assert depth(engine) == ([(100, 3, 1)], [])
    assert engine.open_order_count == 1


def test_retry_of_a_closed_order_is_still_a_duplicate() -> None:
    engine = engine_with()
    place(engine, limit("s", "sell", 5, 100))
    original = limit("a", "buy", 5, 100, post_only=True, client_order_id="abc-1")
    assert events_of(engine, original) == [OrderRejected(3, 3, Reason.POST_ONLY_WOULD_CROSS)]

    assert events_of(engine, original) == [DuplicateOrder(4, 3)]
    assert state(engine, 3) == ("rejected", 0, 0, 5)
    assert depth(engine) == ([], [(100, 5, 1)])


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param(limit("a", "buy", 6, 100, client_order_id="abc-1"), id="quantity"),
        pytest.param(limit("a", "buy", 5, 101, client_order_id="abc-1"), id="price"),
        pytest.param(limit("a", "sell", 5, 100, client_order_id="abc-1"), id="side"),
        pytest.param(market("a", "buy", 5, client_order_id="abc-1"), id="type"),
        pytest.param(limit("a", "buy", 5, 100, tif="ioc", client_order_id="abc-1"), id="tif"),
        pytest.param(
            limit("a", "buy", 5, 100, post_only=True, client_order_id="abc-1"), id="post_only"
        ),
        pytest.param(limit("a", "buy", 5, 100, stp="none", client_order_id="abc-1"), id="stp"),
    ],
)
def test_same_client_order_id_with_different_parameters_is_a_conflict(retry: NewOrder) -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100, client_order_id="abc-1"))

    assert events_of(engine, retry) == [CommandRejected(3, ErrorCode.CLIENT_ORDER_ID_CONFLICT, a)]
    assert engine.order(3) is None
    assert state(engine, a) == ("new", 0, 5, 0)
    assert depth(engine) == ([(100, 5, 1)], [])


def test_same_client_order_id_for_another_account_is_independent() -> None:
    engine = engine_with()
    place(engine, limit("a", "buy", 5, 100, client_order_id="abc-1"))

    assert events_of(engine, limit("b", "buy", 5, 100, client_order_id="abc-1")) == [
        OrderAccepted(3, 3)
    ]
    assert depth(engine) == ([(100, 10, 2)], [])


def test_refused_order_does_not_use_up_its_client_order_id() -> None:
    engine = engine_with()
    refused = limit("a", "buy", 5, 100, symbol=ETH, client_order_id="abc-1")
    assert events_of(engine, refused) == [CommandRejected(2, ErrorCode.UNKNOWN_SYMBOL, None)]

    assert events_of(engine, limit("a", "buy", 5, 100, client_order_id="abc-1")) == [
        OrderAccepted(3, 3)
    ]


# -- refusals --------------------------------------------------------------------------------


def test_unknown_symbol_is_refused() -> None:
    engine = engine_with()

    assert events_of(engine, limit("a", "buy", 5, 100, symbol=ETH)) == [
        CommandRejected(2, ErrorCode.UNKNOWN_SYMBOL, None)
    ]
    assert engine.order(2) is None
    assert engine.open_order_count == 0


def test_quantity_out_of_range_is_refused() -> None:
    engine = engine_with()

    assert events_of(engine, limit("a", "buy", 1_000_001, 100)) == [
        CommandRejected(2, ErrorCode.QUANTITY_OUT_OF_RANGE, None)
    ]
    assert engine.order(2) is None
    assert events_of(engine, limit("a", "buy", 1_000_000, 100)) == [OrderAccepted(3, 3)]


def test_quantity_below_the_minimum_is_refused() -> None:
    engine = MatchingEngine()
    events_of(engine, AddInstrument(instrument(min_quantity="0.01")))

    assert events_of(engine, limit("a", "buy", 9, 100)) == [
        CommandRejected(2, ErrorCode.QUANTITY_OUT_OF_RANGE, None)
    ]
    assert events_of(engine, limit("a", "buy", 10, 100)) == [OrderAccepted(3, 3)]


def test_adding_an_instrument_emits_instrument_added() -> None:
    engine = MatchingEngine()

    assert events_of(engine, AddInstrument(instrument(band=10))) == [
        InstrumentAdded(1, instrument(band=10))
    ]
    assert engine.instrument(SYMBOL) == instrument(band=10)


def test_adding_an_existing_instrument_is_refused_with_instrument_exists() -> None:
    engine = engine_with()

    assert events_of(engine, AddInstrument(instrument(band=5))) == [
        CommandRejected(2, ErrorCode.INSTRUMENT_EXISTS, None)
    ]
    assert engine.instruments() == [instrument()]


# -- instrument edge: decimals to ticks and lots ---------------------------------------------


@pytest.mark.parametrize(
    ("price", "ticks"), [("101.25", 10125), ("101.250", 10125), ("0.01", 1), ("1E+2", 10000)]
)
def test_price_to_ticks_is_exact_on_the_grid(price: str, ticks: int) -> None:
    assert instrument().price_to_ticks(Decimal(price)) == ticks


@pytest.mark.parametrize("price", ["101.255", "101.251", "0.001", "100.009"])
def test_price_off_the_tick_grid_raises_invalid_tick_and_is_never_rounded(price: str) -> None:
    with pytest.raises(InvalidTick) as info:
        instrument().price_to_ticks(Decimal(price))
    assert info.value.code is ErrorCode.INVALID_TICK


@pytest.mark.parametrize(("quantity", "lots"), [("1.5", 1500), ("0.001", 1), ("1000", 1_000_000)])
def test_quantity_to_lots_is_exact_on_the_grid(quantity: str, lots: int) -> None:
    assert instrument().quantity_to_lots(Decimal(quantity)) == lots


@pytest.mark.parametrize("quantity", ["1.0005", "0.0001", "999.9999"])
def test_quantity_off_the_lot_grid_raises_invalid_lot(quantity: str) -> None:
    with pytest.raises(InvalidLot) as info:
        instrument().quantity_to_lots(Decimal(quantity))
    assert info.value.code is ErrorCode.INVALID_LOT


@pytest.mark.parametrize(
    ("minimum", "quantity"), [("0.001", "1000.001"), ("0.001", "2000"), ("0.01", "0.005")]
)
def test_quantity_out_of_range_raises_quantity_out_of_range(minimum: str, quantity: str) -> None:
    with pytest.raises(QuantityOutOfRange) as info:
        instrument(min_quantity=minimum).quantity_to_lots(Decimal(quantity))
    assert info.value.code is ErrorCode.QUANTITY_OUT_OF_RANGE


@pytest.mark.parametrize("method", ["price_to_ticks", "quantity_to_lots"])
@pytest.mark.parametrize(
    "value", ["0", "-0", "-1", "-0.01", "NaN", "sNaN", "Infinity", "-Infinity"]
)
def test_zero_negative_and_non_finite_values_are_rejected(method: str, value: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        getattr(instrument(), method)(Decimal(value))
    assert info.value.code is ErrorCode.VALIDATION_ERROR


@pytest.mark.parametrize("method", ["price_to_ticks", "quantity_to_lots"])
def test_values_that_are_not_decimals_are_rejected(method: str) -> None:
    with pytest.raises(InvalidCommand):
        getattr(instrument(), method)(1.5)


def test_huge_values_are_rejected_rather_than_overflowing() -> None:
    with pytest.raises(InvalidCommand):
        instrument().price_to_ticks(Decimal("1E+30"))
    with pytest.raises(InvalidCommand):
        instrument().price_to_ticks(Decimal("1E+13"))


def test_ticks_and_lots_convert_back_to_decimals() -> None:
    assert instrument().ticks_to_price(10125) == Decimal("101.25")
    assert instrument().lots_to_quantity(1500) == Decimal("1.5")


@pytest.mark.parametrize("symbol", ["btc-usd", "BTC_USD", "", "A-B-C", "ABCDEFGHIJKLM"])
def test_instrument_symbol_must_match_the_pattern(symbol: str) -> None:
    with pytest.raises(InvalidCommand):
        instrument(symbol)


def test_instrument_minimum_must_not_exceed_maximum() -> None:
    with pytest.raises(InvalidCommand):
        instrument(min_quantity="2", max_quantity="1")


# -- average price ---------------------------------------------------------------------------


def test_average_price_is_quantity_weighted() -> None:
    engine = engine_with()
    s, t = place(engine, limit("s", "sell", 1, 100), limit("t", "sell", 2, 103))
    place(engine, limit("b", "buy", 3, 103))

    taker = engine.order(4)
    assert taker is not None
    assert taker.average_price_ticks == Fraction(100 * 1 + 103 * 2, 3)  # not (100 + 103) / 2
    assert engine.order(s).average_price_ticks == 100  # type: ignore[union-attr]
    assert engine.order(t).average_price_ticks == 103  # type: ignore[union-attr]


def test_average_price_is_none_without_fills() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))

    assert engine.order(a).average_price_ticks is None  # type: ignore[union-attr]


def test_average_price_survives_an_amend_that_loses_priority() -> None:
    engine = engine_with()
    (a,) = place(engine, limit("a", "buy", 5, 100))
    place(engine, limit("s", "sell", 2, 100), limit("t", "sell", 1, 102))
    events_of(engine, AmendOrder("a", a, price=102))

    assert state(engine, a) == ("partially_filled", 3, 2, 0)
    assert engine.order(a).average_price_ticks == Fraction(100 * 2 + 102, 3)  # type: ignore[union-attr]


# -- invariants ------------------------------------------------------------------------------


def test_trade_ids_are_unique_and_increase_across_commands() -> None:
    engine = engine_with()
    place(
        engine, limit("s", "sell", 1, 100), limit("s", "sell", 1, 101), limit("s", "sell", 1, 102)
    )
    first = events_of(engine, limit("b", "buy", 2, 101))
    second = events_of(engine, limit("b", "buy", 1, 102))

    assert [e.trade_id for e in first + second if isinstance(e, Trade)] == [1, 2, 3]
    assert [t.trade_id for t in engine.recent_trades(SYMBOL)] == [3, 2, 1]


def test_book_is_never_crossed_after_a_sweep_that_rests() -> None:
    engine = engine_with()
    place(
        engine, limit("s", "sell", 1, 100), limit("s", "sell", 1, 101), limit("s", "sell", 5, 103)
    )
    place(engine, limit("b", "buy", 4, 102))

    book = engine.book(SYMBOL)
    assert book is not None
    assert (book.best_bid_price, book.best_ask_price) == (102, 103)
    assert book.spread == 1
    assert depth(engine) == ([(102, 2, 1)], [(103, 5, 1)])


_accounts = st.sampled_from(["a", "b", "c"])
_sides = st.sampled_from(["buy", "sell"])
_quantities = st.integers(1, 6)
_prices = st.integers(95, 105)
_stps = st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "none"])
_order_ids = st.integers(2, 40)
_commands = st.one_of(
    st.builds(
        limit,
        _accounts,
        _sides,
        _quantities,
        _prices,
        tif=st.sampled_from(["gtc", "gtc", "ioc", "fok"]),
        stp=_stps,
    ),
    st.builds(limit, _accounts, _sides, _quantities, _prices, post_only=st.just(True)),
    st.builds(
        market, _accounts, _sides, _quantities, tif=st.sampled_from(["ioc", "fok"]), stp=_stps
    ),
    st.builds(CancelOrder, st.one_of(st.none(), _accounts), _order_ids),
    st.builds(AmendOrder, _accounts, _order_ids, st.one_of(st.none(), _prices), _quantities),
    st.builds(AmendOrder, _accounts, _order_ids, _prices),
    st.builds(CancelAll, _accounts),
)


@settings(max_examples=300, deadline=None)
@given(band=st.sampled_from([None, 3]), commands=st.lists(_commands, max_size=40))
def test_quantities_are_conserved_and_the_book_is_never_crossed(
    band: int | None, commands: list[object]
) -> None:
    engine = engine_with(band=band)
    filled: dict[int, int] = {}
    canceled: dict[int, int] = {}
    last_trade_id = 0
    for command in commands:
        # events_of checks after every command: filled + remaining + canceled == quantity for
        # every order, the book is not crossed and every level's quantity and count are exact.
        events = events_of(engine, command)  # type: ignore[arg-type]
        for event in events:
            if isinstance(event, Trade):
                assert event.trade_id == last_trade_id + 1
                last_trade_id = event.trade_id
                for order_id in (event.taker_order_id, event.maker_order_id):
                    filled[order_id] = filled.get(order_id, 0) + event.quantity
            elif isinstance(event, OrderCanceled):
                canceled[event.order_id] = canceled.get(event.order_id, 0) + event.quantity
            elif isinstance(event, OrderRejected):
                canceled[event.order_id] = engine.order(event.order_id).quantity  # type: ignore[union-attr]
        if isinstance(command, NewOrder) and events:
            assert kinds(events)[0] in {
                "OrderAccepted",
                "OrderRejected",
                "DuplicateOrder",
                "CommandRejected",
            }
    for order_id in range(2, engine.sequence + 1):
        order = engine.order(order_id)
        if order is not None:
            assert order.filled == filled.get(order_id, 0), order
            assert order.canceled == canceled.get(order_id, 0), order


def test_a_stamped_command_differs_from_its_original_in_the_timestamp_only() -> None:
    original = limit("a", "buy", 5, 100, client_order_id="abc-1", tif="ioc", timestamp=3)
    copy = stamped(original, 42)
    assert copy == limit("a", "buy", 5, 100, client_order_id="abc-1", tif="ioc", timestamp=42)
    assert original.timestamp == 3
    cancel = stamped(CancelOrder("a", 7, timestamp=3), 42)
    assert cancel == CancelOrder("a", 7, timestamp=42)
    with pytest.raises(InvalidCommand):
        stamped(original, "42")  # type: ignore[arg-type]
