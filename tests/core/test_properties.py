"""Property tests: the matching engine against a naive reference, and replay determinism.

A hypothesis state machine sends random commands to the real :class:`MatchingEngine` and to the
reference in :mod:`tests.core.reference` in lockstep and, after every command, checks that both
did the same thing (events, trades, every order's quantities and status, the depth of both books)
and that the engine keeps its invariants: the book is never crossed, quantities are conserved and
makers fill in price-time priority.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from matching_engine.core import (
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    CommandRejected,
    DuplicateOrder,
    Event,
    Instrument,
    InstrumentAdded,
    MatchingEngine,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)

from .reference import ReferenceEngine, RefInstrument

ACCOUNTS = ("alice", "bob", "carol")
FREE = "FREE-USD"  # no price band
BANDED = "BAND-USD"  # ±5 % around the last trade price
SYMBOLS = (FREE, BANDED)
BAND_PCT = 5
MAX_LOTS = 10
CLIENT_IDS = ("c-1", "c-2", "c_3", "c4", "c5", "c6", "c7", "c8")

INSTRUMENTS = {
    FREE: Instrument(
        symbol=FREE,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("1"),
        min_quantity=Decimal("1"),
        max_quantity=Decimal(MAX_LOTS),
    ),
    BANDED: Instrument(
        symbol=BANDED,
        tick_size=Decimal("1"),
        lot_size=Decimal("0.1"),
        min_quantity=Decimal("0.1"),
        max_quantity=Decimal(MAX_LOTS) / 10,
        price_band_pct=Decimal(BAND_PCT),
    ),
}
REF_INSTRUMENTS = {
    FREE: RefInstrument(FREE, min_lots=1, max_lots=MAX_LOTS),
    BANDED: RefInstrument(BANDED, min_lots=1, max_lots=MAX_LOTS, band_pct=Fraction(BAND_PCT)),
}

# -- strategies -------------------------------------------------------------------------------

# Strategies are mostly ``sampled_from`` (one cheap draw each), weighted by repetition.
accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
stps = st.sampled_from(list(SelfTradePrevention))
# Mostly a narrow range around 100 so that orders cross often; sometimes wider, to reach the
# edges of the ±5 % band (95 and 105 when the last trade was at 100) and beyond.
prices = st.sampled_from([*range(98, 103), *range(98, 103), *range(93, 108)])
# Mostly in range; MAX_LOTS + 1 is refused with quantity_out_of_range.
quantities = st.sampled_from([*range(1, 6), *range(1, 6), *range(1, MAX_LOTS + 2)])
# A client order id on about one order in five, from a pool small enough to be reused.
client_ids = st.sampled_from([None] * 4 * len(CLIENT_IDS) + list(CLIENT_IDS))
timestamps = st.integers(0, 10**6)
# Mostly gtc limit orders, so that the book fills up and later orders have makers to meet.
# (type, time in force as sent, post-only allowed)
ORDER_KINDS = [
    *[(OrderType.LIMIT, None, True)] * 3,
    *[(OrderType.LIMIT, TimeInForce.GTC, True)] * 3,
    (OrderType.LIMIT, TimeInForce.IOC, False),
    (OrderType.LIMIT, TimeInForce.FOK, False),
    (OrderType.MARKET, None, False),
    (OrderType.MARKET, TimeInForce.IOC, False),
    (OrderType.MARKET, TimeInForce.FOK, False),
]
order_kinds = st.sampled_from(ORDER_KINDS)
who_where_which = st.sampled_from(
    [(a, s, side) for a in ACCOUNTS for s in SYMBOLS for side in (Side.BUY, Side.SELL)]
)


@st.composite
def new_orders(draw: st.DrawFn) -> NewOrder:
    """A statically valid new order, any type / time in force / post-only / stp combination."""
    order_type, tif, post_only_allowed = draw(order_kinds)
    account, symbol, side = draw(who_where_which)
    return NewOrder(
        account=account,
        symbol=symbol,
        side=side,
        type=order_type,
        quantity=draw(quantities),
        price=draw(prices) if order_type is OrderType.LIMIT else None,
        time_in_force=tif,
        post_only=post_only_allowed and draw(st.booleans()),
        stp=draw(stps),
        client_order_id=draw(client_ids),
        timestamp=draw(timestamps),
    )


@st.composite
def amends(draw: st.DrawFn, account: str, order_id: int, filled: int = 0) -> AmendOrder:
    """An amend; ``filled`` steers some quantities to either side of the filled quantity."""
    price = draw(st.one_of(st.none(), prices))
    near_filled = st.integers(max(1, filled - 1), filled + 2)
    quantity = draw(st.one_of(st.none(), quantities, near_filled))
    if price is None and quantity is None:
        quantity = draw(quantities)
    return AmendOrder(
        account=account,
        order_id=order_id,
        price=price,
        quantity=quantity,
        timestamp=draw(timestamps),
    )


# -- the two engines side by side -------------------------------------------------------------


def submit_to_reference(ref: ReferenceEngine, command: Command) -> list[tuple[object, ...]]:
    """The same command, spelled for the reference (plain strings and ints)."""
    if isinstance(command, NewOrder):
        return ref.new_order(
            account=command.account,
            symbol=command.symbol,
            side=command.side.value,
            type=command.type.value,
            quantity=command.quantity,
            price=command.price,
            time_in_force=None if command.time_in_force is None else command.time_in_force.value,
            post_only=command.post_only,
            stp=command.stp.value,
            client_order_id=command.client_order_id,
        )
    if isinstance(command, CancelOrder):
        return ref.cancel(command.account, command.order_id)
    if isinstance(command, CancelAll):
        return ref.cancel_all(command.account, command.symbol)
    if isinstance(command, AmendOrder):
        return ref.amend(command.account, command.order_id, command.price, command.quantity)
    assert isinstance(command, AddInstrument)
    return ref.add_instrument(REF_INSTRUMENTS[command.instrument.symbol])


def as_records(events: list[Event], sequence: int) -> list[tuple[object, ...]]:
    """The engine's events in the reference's vocabulary; every event carries ``sequence``."""
    records: list[tuple[object, ...]] = []
    for event in events:
        assert event.sequence == sequence, (event, sequence)
        if isinstance(event, Trade):
            records.append(
                (
                    "trade",
                    event.trade_id,
                    event.symbol,
                    event.price,
                    event.quantity,
                    event.taker_side.value,
                    event.taker_order_id,
                    event.maker_order_id,
                    event.taker_account,
                    event.maker_account,
                )
            )
        elif isinstance(event, OrderAccepted):
            records.append(("accepted", event.order_id))
        elif isinstance(event, OrderRejected):
            records.append(("order_rejected", event.order_id, event.reason.value))
        elif isinstance(event, OrderCanceled):
            records.append(("canceled", event.order_id, event.quantity, event.reason.value))
        elif isinstance(event, OrderAmended):
            records.append(
                ("amended", event.order_id, event.price, event.quantity, event.priority_kept)
            )
        elif isinstance(event, DuplicateOrder):
            records.append(("duplicate", event.order_id))
        elif isinstance(event, CommandRejected):
            records.append(("command_rejected", event.code.value, event.order_id))
        elif isinstance(event, InstrumentAdded):
            records.append(("instrument_added", event.instrument.symbol))
        else:  # pragma: no cover - a new event type must be taught to this test
            raise AssertionError(f"unexpected event {event!r}")
    return records


def check_price_time_priority(ref: ReferenceEngine, command: Command, events: list[Event]) -> None:
    """Every trade takes the best maker that is still live at that moment.

    The reference's book before the command (equal to the engine's, checked after the previous
    command) says who was resting, at which price and with which time priority. Walking the
    engine's events in order, a trade with maker M is wrong if some order on M's side of the
    same symbol, with a better price, or the same price and an older priority, still had
    quantity left at that moment (not yet filled or canceled by this command). It also checks
    that the trade is at the maker's price and within the taker's limit.
    """
    before = {o.order_id: (o.symbol, o.side, o.price, o.priority) for o in ref.resting}
    left = {o.order_id: o.remaining for o in ref.resting}
    if isinstance(command, NewOrder):
        taker_limit = command.price
    elif isinstance(command, AmendOrder) and command.order_id in ref.orders:
        taker_limit = (
            command.price if command.price is not None else ref.orders[command.order_id].price
        )
    else:
        taker_limit = None
    for event in events:
        if isinstance(event, OrderCanceled) and event.order_id in left:
            left[event.order_id] = 0
        if not isinstance(event, Trade):
            continue
        assert event.maker_order_id in before, f"maker {event.maker_order_id} was not resting"
        symbol, side, price, priority = before[event.maker_order_id]
        assert event.symbol == symbol
        assert event.price == price, "a trade happens at the maker's price"
        assert event.taker_side.value != side
        if taker_limit is not None:
            if side == "sell":
                assert event.price <= taker_limit, "a buy taker paid above its limit"
            else:
                assert event.price >= taker_limit, "a sell taker sold below its limit"
        better = -1 if side == "buy" else 1  # sign that makes "smaller is better" on this side
        for other_id, (o_symbol, o_side, o_price, o_priority) in before.items():
            if other_id == event.maker_order_id or o_symbol != symbol or o_side != side:
                continue
            assert o_price is not None
            assert price is not None
            ahead = better * o_price < better * price or (
                o_price == price and o_priority < priority
            )
            assert not (ahead and left[other_id] > 0), (
                f"trade {event.trade_id} took maker {event.maker_order_id} "
                f"(price {price}, priority {priority}) while order {other_id} "
                f"(price {o_price}, priority {o_priority}) was still live ahead of it"
            )
        left[event.maker_order_id] -= event.quantity
        assert left[event.maker_order_id] >= 0


def order_state(order: Any) -> tuple[object, ...]:
    return (
        order.price,
        order.quantity,
        order.filled,
        order.remaining,
        order.canceled,
        str(order.status),
        None if order.reason is None else str(order.reason),
    )


def normalised(records: list[tuple[object, ...]], command: Command) -> list[tuple[object, ...]]:
    # The contract does not fix the order in which a cancel-all cancels: compare it as a set.
    return sorted(records, key=repr) if isinstance(command, CancelAll) else records


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine()
        self.ref = ReferenceEngine()
        self.commands: list[Command] = []
        self.events: list[list[Event]] = []
        self.order_ids: list[int] = []  # every order ever created, oldest first
        self.with_client_id: list[NewOrder] = []  # orders sent with a client order id
        # Tracked from the commands and events alone: each order's total and filled quantity,
        # and the sum of price * quantity over its fills.
        self.quantity: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.notional: dict[int, int] = {}

    # -- the lockstep step ----------------------------------------------------------------

    def run(self, command: Command) -> list[Event]:
        events = self.engine.submit(command)
        sequence = self.engine.sequence
        self.commands.append(command)
        self.events.append(events)
        # The reference still holds the state before the command: the priority check needs it.
        check_price_time_priority(self.ref, command, events)
        expected = submit_to_reference(self.ref, command)
        assert sequence == self.ref.sequence == len(self.commands)
        actual = as_records(events, sequence)
        assert normalised(actual, command) == normalised(expected, command), command
        self.track(command, events, sequence)
        self.check_orders()
        self.check_books()
        return events

    def track(self, command: Command, events: list[Event], sequence: int) -> None:
        for event in events:
            if isinstance(event, (OrderAccepted, OrderRejected)):
                assert isinstance(command, NewOrder)
                assert event.order_id == sequence, "an order's id is its command's sequence"
                self.order_ids.append(sequence)
                self.quantity[sequence] = command.quantity
                self.filled[sequence] = self.notional[sequence] = 0
            elif isinstance(event, OrderAmended):
                self.quantity[event.order_id] = event.quantity
            elif isinstance(event, Trade):
                for order_id in (event.taker_order_id, event.maker_order_id):
                    self.filled[order_id] += event.quantity
                    self.notional[order_id] += event.price * event.quantity
        if isinstance(command, NewOrder) and command.client_order_id is not None:
            self.with_client_id.append(command)

    # -- rules ------------------------------------------------------------------------------

    @initialize()
    def add_instruments(self) -> None:
        for instrument in INSTRUMENTS.values():
            self.run(AddInstrument(instrument))

    # Two rules enter new orders, a few at a time: new orders are most of the traffic, so the
    # book fills up and orders cross often.
    @rule(commands=st.lists(new_orders(), min_size=1, max_size=4))
    def enter_orders(self, commands: list[NewOrder]) -> None:
        for command in commands:
            self.run(command)

    @rule(commands=st.lists(new_orders(), min_size=1, max_size=4))
    def enter_more_orders(self, commands: list[NewOrder]) -> None:
        for command in commands:
            self.run(command)

    @precondition(lambda self: self.with_client_id)
    @rule(data=st.data(), change=st.booleans())
    def resend_client_order_id(self, data: st.DataObject, change: bool) -> None:
        """Repeat an earlier order with its client order id: unchanged, or with other terms."""
        original = data.draw(st.sampled_from(self.with_client_id))
        fields = {
            name: getattr(original, name)
            for name in (
                "account",
                "symbol",
                "side",
                "type",
                "quantity",
                "price",
                "time_in_force",
                "post_only",
                "stp",
                "client_order_id",
            )
        }
        if change:
            what = data.draw(st.sampled_from(["quantity", "side", "stp", "symbol"]))
            if what == "quantity":
                fields["quantity"] = original.quantity % MAX_LOTS + 1
            elif what == "side":
                fields["side"] = original.side.opposite
            elif what == "stp":
                fields["stp"] = data.draw(stps.filter(lambda s: s is not original.stp))
            else:
                fields["symbol"] = FREE if original.symbol == BANDED else BANDED
        self.run(NewOrder(**fields, timestamp=data.draw(timestamps)))

    @rule(
        data=st.data(),
        pick=st.sampled_from(["open", "open", "any"]),
        who=st.sampled_from(["owner", "owner", "owner", "admin", "anyone"]),
    )
    def cancel(self, data: st.DataObject, pick: str, who: str) -> None:
        """Cancel an open order, a closed one or an id that is no order at all.

        By the owner, an administrator or any account (another's order is not found).
        """
        order_id = data.draw(self.order_id_choices(pick))
        account = self.account_for(data, order_id, who)
        self.run(CancelOrder(account=account, order_id=order_id, timestamp=data.draw(timestamps)))

    @precondition(lambda self: len(self.commands) % 5 == 0)
    @rule(account=accounts, symbol=st.one_of(st.none(), symbols), timestamp=timestamps)
    def cancel_all(self, account: str, symbol: str | None, timestamp: int) -> None:
        # Less frequent than the other rules: it empties a third of the book at once.
        self.run(CancelAll(account=account, symbol=symbol, timestamp=timestamp))

    @rule(
        data=st.data(),
        pick=st.sampled_from(["open", "open", "open", "any"]),
        who=st.sampled_from(["owner", "owner", "owner", "anyone"]),
    )
    def amend(self, data: st.DataObject, pick: str, who: str) -> None:
        """Amend an open order, a closed one or an id that is no order at all."""
        order_id = data.draw(self.order_id_choices(pick))
        account = self.account_for(data, order_id, who) or data.draw(accounts)
        order = self.ref.orders.get(order_id)
        filled = 0 if order is None else order.filled
        self.run(data.draw(amends(account, order_id, filled)))

    @precondition(lambda self: len(self.commands) % 13 == 5)
    @rule(symbol=symbols)
    def add_existing_instrument(self, symbol: str) -> None:
        self.run(AddInstrument(INSTRUMENTS[symbol]))

    def account_for(self, data: st.DataObject, order_id: int, who: str) -> str | None:
        """The order's owner, ``None`` (an administrator) or any account."""
        order = self.ref.orders.get(order_id)
        if who == "owner" and order is not None:
            return order.account
        if who == "admin":
            return None
        return data.draw(accounts)

    def order_id_choices(self, pick: str) -> st.SearchStrategy[int]:
        """Ids of open orders, or of any order ever created, or any id at all."""
        if pick == "open" and self.ref.resting:
            return st.sampled_from([o.order_id for o in self.ref.resting])
        unknown = st.integers(1, len(self.commands) + 3)  # may hit a non-order command's id
        if not self.order_ids:
            return unknown
        known = st.sampled_from(self.order_ids)
        return st.one_of(known, known, unknown)

    # -- checks after every command (``run`` calls them) --------------------------------------

    def check_orders(self) -> None:
        """Every order ever created: same state in both engines, and quantity conserved."""
        for order_id in self.order_ids:
            real = self.engine.order(order_id)
            model = self.ref.orders[order_id]
            assert real is not None, f"the engine forgot order {order_id}"
            assert real.quantity == self.quantity[order_id], real
            assert real.filled == self.filled[order_id], real
            filled, notional = self.filled[order_id], self.notional[order_id]
            average = Fraction(notional, filled) if filled else None
            assert real.average_price_ticks == average, real
            assert real.filled + real.remaining + real.canceled == real.quantity, real
            assert min(real.filled, real.remaining, real.canceled) >= 0, real
            assert order_state(real) == order_state(model), (order_id, real, model)
        for account in ACCOUNTS:
            open_ids = sorted(o.order_id for o in self.engine.open_orders(account))
            assert open_ids == self.ref.open_order_ids(account)
        assert self.engine.open_order_count == len(self.ref.resting)

    def check_books(self) -> None:
        """Same depth in both engines (price, quantity, count per level); never crossed."""
        for symbol in self.ref.instruments:
            real_bids, real_asks = self.engine.depth(symbol, 1000)
            # Levels are (price, total quantity, order count) named tuples: compare as tuples.
            bids = [tuple(level) for level in real_bids]
            asks = [tuple(level) for level in real_asks]
            assert (bids, asks) == self.ref.depth(symbol), symbol
            for _, quantity, count in bids + asks:
                assert quantity > 0, symbol
                assert count > 0, symbol
            best_bid = bids[0][0] if bids else None
            best_ask = asks[0][0] if asks else None
            if best_bid is not None and best_ask is not None:
                assert best_bid < best_ask, f"{symbol} book crossed: {best_bid} >= {best_ask}"
            book = self.engine.book(symbol)
            assert book is not None
            assert (book.best_bid_price, book.best_ask_price) == (best_bid, best_ask)

    def teardown(self) -> None:
        # Replaying the same commands into a fresh engine gives the same events again.
        replay = MatchingEngine()
        assert [replay.submit(command) for command in self.commands] == self.events


EngineVersusReference.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineVersusReference = EngineVersusReference.TestCase


# -- determinism ------------------------------------------------------------------------------


@st.composite
def command_lists(draw: st.DrawFn) -> list[Command]:
    commands: list[Command] = [AddInstrument(i) for i in INSTRUMENTS.values()]
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["new", "new", "new", "cancel", "cancel_all", "amend"]))
        known = st.integers(1, len(commands) + 2)
        if kind == "new":
            commands.append(draw(new_orders()))
        elif kind == "cancel":
            commands.append(
                CancelOrder(account=draw(st.one_of(accounts, st.none())), order_id=draw(known))
            )
        elif kind == "cancel_all":
            commands.append(
                CancelAll(account=draw(accounts), symbol=draw(st.one_of(st.none(), symbols)))
            )
        else:
            commands.append(draw(amends(draw(accounts), draw(known))))
    return commands


@settings(max_examples=200, deadline=None)
@given(commands=command_lists())
def test_replay_is_deterministic(commands: list[Command]) -> None:
    first, second = MatchingEngine(), MatchingEngine()
    events = [first.submit(command) for command in commands]
    again = [second.submit(command) for command in commands]
    assert again == events
    assert [repr(e) for e in again] == [repr(e) for e in events]
    assert first.sequence == second.sequence == len(commands)
    for symbol in SYMBOLS:
        assert first.depth(symbol, 1000) == second.depth(symbol, 1000)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_reference_agrees_on_a_plain_cross(symbol: str) -> None:
    """A smoke test of the harness itself: one resting sell, one crossing buy."""
    machine = EngineVersusReference()
    machine.add_instruments()
    sell = NewOrder("alice", symbol, Side.SELL, OrderType.LIMIT, 3, price=100)
    buy = NewOrder("bob", symbol, Side.BUY, OrderType.LIMIT, 5, price=101)
    machine.run(sell)
    machine.run(buy)
    assert machine.ref.depth(symbol) == ([(101, 2, 1)], [])
    machine.teardown()
