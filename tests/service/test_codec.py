"""The journal's format: every command round-trips, written as compact JSON."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching_engine import codec
from matching_engine.core import (
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Instrument,
    NewOrder,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

UNITS = st.integers(1, 10**15 - 1)
TIMESTAMPS = st.integers(0, 2**63 - 1)
ACCOUNTS = st.sampled_from(["acc_5f0c2a9d1e3b4c6a", "trader-1"])

new_orders = st.builds(
    NewOrder,
    account=ACCOUNTS,
    symbol=st.just("BTC-USD"),
    side=st.sampled_from(Side),
    type=st.just(OrderType.LIMIT),
    quantity=UNITS,
    price=UNITS,
    time_in_force=st.sampled_from(TimeInForce),
    post_only=st.just(False),
    stp=st.sampled_from(SelfTradePrevention),
    client_order_id=st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    timestamp=TIMESTAMPS,
)
market_orders = st.builds(
    NewOrder,
    account=ACCOUNTS,
    symbol=st.just("ETH-USD"),
    side=st.sampled_from(Side),
    type=st.just(OrderType.MARKET),
    quantity=UNITS,
    timestamp=TIMESTAMPS,
)
others = st.one_of(
    st.builds(CancelOrder, ACCOUNTS, UNITS, TIMESTAMPS),
    st.builds(CancelAll, ACCOUNTS, st.none() | st.just("BTC-USD"), TIMESTAMPS),
    st.builds(AmendOrder, ACCOUNTS, UNITS, UNITS, st.none() | UNITS, TIMESTAMPS),
)
ADD = AddInstrument(
    Instrument("BTC-USD", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal("1000"),
               price_band_pct=Decimal("7.5")),
    timestamp=5,
)  # fmt: skip


@given(st.one_of(new_orders, market_orders, others, st.just(ADD)))
def test_a_command_round_trips_through_compact_json(command: Command) -> None:
    text = codec.encode(command)
    assert codec.decode(text) == command
    # The journal's bytes: what json.dumps writes with compact separators, "kind" first.
    parsed = json.loads(text)
    assert text == json.dumps(parsed, separators=(",", ":"))
    assert next(iter(parsed)) == "kind"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown command kind"):
        codec.decode('{"kind":"launch_rocket","timestamp":1}')
