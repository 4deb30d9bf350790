"""The matching engine: commands in, events out.

Theory of operation
-------------------
``MatchingEngine.submit(command)`` is the only way to change state. It gives the command the next
sequence number, applies it and answers the list of events it caused. Nothing else is an input:
no clock (timestamps come with the command), no randomness, no IO. Order ids are the sequence
number of the command that created the order and trade ids come from a counter, so replaying the
same commands into a fresh engine yields the same events, byte for byte.

Matching is price-time priority: an incoming order (the taker) trades with the best-priced
resting orders (makers) in arrival order, at the maker's price, while its limit allows. What the
taker does with its remainder depends on its type and time in force: a gtc limit order rests, an
ioc or market order cancels it, a fok order trades only if it can fill completely. Self-trade
prevention is decided by the taker's ``stp`` when it meets a resting order of its own account.

Invariants after every command: the book is not crossed (best bid < best ask), every order has
``filled + remaining + canceled == quantity``, and makers at one price fill in arrival order.

Complexity: best price O(1); adding at an existing level O(1); a new level O(log levels); cancel
by id O(1) amortised; a fill O(1) plus O(log levels) when it empties a level. Cancel-all is linear
in the account's open orders only. Nothing scans the whole book.

Memory is bounded by the open orders plus two fixed-size histories: recently closed orders (so
the service can read the orders a command closed) and recent trades per symbol. Closed orders
beyond the capacity are forgotten, oldest first, when the next command starts: never in the middle
of one, so every order a command closes can still be read after it, however many it closed, and
freeing costs each command no more than the previous one closed. The capacity is a cache size:
the service reads older closed orders from its read model, and the orders of a small history are
still in the processor's caches when they are freed.

The new-order, cancel and fill paths are written out inline, with attributes read once into
locals: they run millions of times and a Python call costs as much as a dozen of those lines.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import defaultdict, deque
from typing import Any, Final, cast

from ._book import _COMPACT_MIN_DEAD, EMPTY, BookSide, DepthLevel, OrderBook, PriceLevel
from ._commands import AddInstrument, AmendOrder, CancelAll, CancelOrder, Command, NewOrder
from ._events import (
    CommandRejected,
    DuplicateOrder,
    Event,
    InstrumentAdded,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    Trade,
)
from ._instrument import Instrument
from ._order import Order
from ._types import ErrorCode, Reason, SelfTradePrevention, Side, TimeInForce

__all__ = ["MatchingEngine"]

# The limit key of a market order: above every real key, below EMPTY (an empty side never crosses).
_ANY_PRICE: Final = EMPTY - 1

# Compiled, a deque method called through its descriptor skips the lookup by name that
# ``queue.popleft()`` makes on every call (lists have native methods; deques do not).
_popleft: Final = deque.popleft
_push: Final = deque.append
# Final: compiled, these are static constants rather than a module dictionary lookup per use.
_BUY: Final = Side.BUY
_GTC: Final = TimeInForce.GTC
_FOK: Final = TimeInForce.FOK
_STP_NONE: Final = SelfTradePrevention.NONE
_CANCEL_NEWEST: Final = SelfTradePrevention.CANCEL_NEWEST
_CANCEL_OLDEST: Final = SelfTradePrevention.CANCEL_OLDEST
_USER_CANCELED: Final = Reason.USER_CANCELED
_SELF_TRADE_PREVENTED: Final = Reason.SELF_TRADE_PREVENTED

_COMMAND_TYPES: Final = frozenset({NewOrder, CancelOrder, CancelAll, AmendOrder, AddInstrument})

# What a snapshot keeps: every attribute of the engine.
_STATE: Final = (
    "sequence",
    "_next_trade_id",
    "_books",
    "_orders",
    "_open_by_account",
    "_client_order_ids",
    "_closed_ids",
    "_closed_capacity",
    "_trade_history",
)


# Snapshots rebuild it through __init__ (every argument has a default), then __setstate__: a
# compiled class has no __dict__ to restore.
class MatchingEngine:
    def __init__(self, *, closed_order_capacity: int = 10_000, trade_history: int = 1_000) -> None:
        self.sequence = 0
        self._next_trade_id = 1
        self._books: dict[str, OrderBook] = {}
        # Every order the engine knows: the open ones (remaining > 0, resting on a book) and the
        # closed ones it still remembers, whose ids are in _closed_ids. One index, so closing an
        # order moves nothing between dicts.
        # Keyed by each order's ``key`` object (its id), rather than typed ``int``: see Order.key.
        self._orders: dict[object, Order] = {}
        self._open_by_account: defaultdict[str, dict[object, Order]] = defaultdict(dict)
        self._client_order_ids: dict[tuple[str, str], tuple[int, NewOrder]] = {}
        self._closed_ids: deque[object] = deque()  # the orders' keys, oldest first
        self._closed_capacity = closed_order_capacity
        self._trade_history = trade_history

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes; :meth:`restore` gives back an engine that behaves the same.

        Pickle, because the state is a graph of the engine's own objects (levels point at their
        sides, orders at their levels) that it rebuilds exactly. Restore only what this method
        wrote: unpickling runs code named in the data, so a snapshot is as trusted as the journal.
        """
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(state: bytes) -> MatchingEngine:
        engine = pickle.loads(state)
        if not isinstance(engine, MatchingEngine):
            raise TypeError("not a matching engine snapshot")
        return engine

    # Explicit, so that the plain-Python and the compiled core write and read the same snapshot.
    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _STATE:
            setattr(self, name, state[name])

    # -- the one entry point ----------------------------------------------------------------

    def submit(self, command: Command) -> list[Event]:
        """Apply ``command`` with the next sequence number; answer the events it caused."""
        kind = type(command)
        if kind is not NewOrder and kind not in _COMMAND_TYPES:  # the most frequent at once
            raise TypeError(f"not a command: {command!r}")
        if len(self._closed_ids) > self._closed_capacity:
            self._forget_closed()
        self.sequence = sequence = self.sequence + 1
        # Most frequent first. isinstance narrows the type for the compiled direct calls; the
        # command types are final (frozen dataclasses nobody subclasses), so it matches like ``is``.
        if isinstance(command, NewOrder):
            return self._new_order(command, sequence)
        if isinstance(command, CancelOrder):
            return self._cancel(command, sequence)
        if isinstance(command, AmendOrder):
            return self._amend(command, sequence)
        if isinstance(command, CancelAll):
            return self._cancel_all(command, sequence)
        return self._add_instrument(command, sequence)

    # -- queries ----------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument | None:
        book = self._books.get(symbol)
        return None if book is None else book.instrument

    def instruments(self) -> list[Instrument]:
        return [book.instrument for book in self._books.values()]

    def book(self, symbol: str) -> OrderBook | None:
        return self._books.get(symbol)

    def depth(self, symbol: str, limit: int = 50) -> tuple[list[DepthLevel], list[DepthLevel]]:
        """L2 depth ``(bids, asks)``: [price, total quantity, order count] per level, best first."""
        book = self._books[symbol]
        return book.bids.depth(limit), book.asks.depth(limit)

    def order(self, order_id: int) -> Order | None:
        """An open order, or one closed recently enough to still be remembered."""
        return self._orders.get(order_id)

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        """The account's open orders, newest first."""
        orders = self._open_by_account.get(account, {})
        return sorted(
            (o for o in orders.values() if symbol is None or o.command.symbol == symbol),
            key=lambda o: o.order_id,
            reverse=True,
        )

    def recent_trades(self, symbol: str, limit: int = 100) -> list[Trade]:
        """The symbol's most recent trades, newest first."""
        trades = self._books[symbol].trades
        return [trades[-1 - i] for i in range(min(limit, len(trades)))]

    def fingerprint(self) -> str:
        """A digest of the state that matters for what comes next: the books in priority order
        with every live order's quantities, last prices and the counters. Two engines with the
        same fingerprint answer the same commands the same way (closed orders aside)."""
        digest = hashlib.sha256()
        digest.update(f"{self.sequence}:{self._next_trade_id}\n".encode())
        for symbol in sorted(self._books):
            book = self._books[symbol]
            digest.update(f"{symbol}:{book.last_price}\n".encode())
            for side in (book.bids, book.asks):
                for key in side.keys:
                    for order in side.levels[key].live_orders():
                        digest.update(
                            f"{order.order_id},{order.price},{order.quantity},"
                            f"{order.filled},{order.remaining};".encode()
                        )
                digest.update(b"|")
        return digest.hexdigest()

    @property
    def open_order_count(self) -> int:
        return len(self._orders) - len(self._closed_ids)

    @property
    def trade_count(self) -> int:
        """Trades since the start of the sequence (trade ids count from 1)."""
        return self._next_trade_id - 1

    # -- instruments ------------------------------------------------------------------------

    def _add_instrument(self, command: AddInstrument, sequence: int) -> list[Event]:
        instrument = command.instrument
        if instrument.symbol in self._books:
            return [CommandRejected(sequence, ErrorCode.INSTRUMENT_EXISTS)]
        self._books[instrument.symbol] = OrderBook(instrument, self._trade_history)
        return [InstrumentAdded(sequence, instrument)]

    # -- new orders -------------------------------------------------------------------------

    def _new_order(self, command: NewOrder, sequence: int) -> list[Event]:
        book = self._books.get(command.symbol)
        if book is None:
            return [CommandRejected(sequence, ErrorCode.UNKNOWN_SYMBOL)]
        # Built first: it reads the command's fields once, and later reads of its own are cheap.
        order = Order(sequence, command)
        quantity = order.quantity
        if quantity < book.min_lots or quantity > book.max_lots:
            return [CommandRejected(sequence, ErrorCode.QUANTITY_OUT_OF_RANGE)]
        if command.client_order_id is not None:
            known = self._check_client_order_id(command, sequence)
            if known is not None:
                return [known]

        price = order.price
        if command.side is _BUY:
            own, opposite = book.bids, book.asks
            limit_key = _ANY_PRICE if price is None else price
        else:
            own, opposite = book.asks, book.bids
            limit_key = _ANY_PRICE if price is None else -price
        if price is not None:
            if book.banded and not book.instrument.within_band(price, book.last_price):
                return self._reject(order, Reason.PRICE_BAND, sequence)
            if command.post_only and opposite.best_key <= limit_key:
                return self._reject(order, Reason.POST_ONLY_WOULD_CROSS, sequence)

        events: list[Event] = [OrderAccepted(sequence, sequence)]
        time_in_force = command.time_in_force
        if opposite.best_key <= limit_key:
            timestamp = order.updated_at
            if time_in_force is _FOK and not self._fok_fillable(order, opposite, limit_key):
                return self._close_new(order, Reason.FOK_UNFILLABLE, events, sequence, timestamp)
            if self._take(order, book, opposite, limit_key, events, sequence, timestamp):
                return self._close_new(
                    order, Reason.SELF_TRADE_PREVENTED, events, sequence, timestamp
                )
            if not order.remaining:
                self._remember_closed(order)
                return events
        if time_in_force is not _GTC:
            if time_in_force is _FOK:
                reason = Reason.FOK_UNFILLABLE
            else:
                reason = Reason.NO_LIQUIDITY if price is None else Reason.IOC_REMAINDER
            return self._close_new(order, reason, events, sequence, order.updated_at)

        # Rest at the back of the level (BookSide.add, inlined).
        level = own.levels.get(-limit_key)
        if level is None:
            level = own.new_level(-limit_key, price)  # type: ignore[arg-type]  # gtc is limit
        _push(level.orders, order)
        level.quantity += order.remaining
        level.count += 1
        order.level = level
        key = order.key
        self._orders[key] = order
        self._open_by_account[order.account][key] = order
        return events

    def _check_client_order_id(self, command: NewOrder, sequence: int) -> Event | None:
        """An idempotent retry or a conflicting reuse; None (and the id recorded) when new."""
        key = (command.account, command.client_order_id)
        previous = self._client_order_ids.get(key)  # type: ignore[arg-type]
        if previous is None:
            self._client_order_ids[key] = (sequence, command)  # type: ignore[index]
            return None
        order_id, original = previous
        if original.same_parameters(command):
            return DuplicateOrder(sequence, order_id)
        return CommandRejected(sequence, ErrorCode.CLIENT_ORDER_ID_CONFLICT, order_id)

    def _reject(self, order: Order, reason: Reason, sequence: int) -> list[Event]:
        order.remaining = 0
        order.reason = reason
        self._remember_closed(order)
        return [OrderRejected(sequence, order.order_id, reason)]

    def _close_new(
        self, order: Order, reason: Reason, events: list[Event], sequence: int, timestamp: int
    ) -> list[Event]:
        """Cancel what is left of an order that never rested."""
        self._cancel_remainder(order, reason, events, sequence, timestamp)
        self._remember_closed(order)
        return events

    def _fok_fillable(self, order: Order, opposite: BookSide, limit_key: int) -> bool:
        """Whether matching would fill the whole order (self-trade prevention included)."""
        needed = order.remaining
        stp = order.command.stp
        account = order.account
        levels = opposite.levels
        for key in opposite.keys:
            if key > limit_key:
                return False
            level = levels[key]
            if stp is _STP_NONE:
                needed -= level.quantity
            else:
                for maker in level.orders:
                    available = maker.remaining
                    if not available:
                        continue
                    if maker.account == account:
                        if stp is _CANCEL_OLDEST:
                            continue  # would be canceled, not traded
                        return False  # matching would stop here, short of the full quantity
                    needed -= available
                    if needed <= 0:
                        return True
            if needed <= 0:
                return True
        return False

    def _take(
        self,
        taker: Order,
        book: OrderBook,
        opposite: BookSide,
        limit_key: int,
        events: list[Event],
        sequence: int,
        timestamp: int,
    ) -> bool:
        """Match ``taker`` against ``opposite`` while its limit allows.

        Answers True when self-trade prevention stopped the taker (its remainder must then be
        canceled by the caller).
        """
        remaining = taker.remaining
        account = taker.account
        stp = taker.command.stp
        check_stp = stp is not _STP_NONE
        taker_id = taker.order_id
        taker_side = taker.command.side
        symbol = book.symbol
        recent = book.trades
        by_account = self._open_by_account
        closed_ids = self._closed_ids
        trade_id = self._next_trade_id
        filled = notional = last_price = 0  # last_price is read only after a fill
        stopped = False
        while remaining and opposite.best_key <= limit_key:
            key = opposite.best_key
            level = cast(PriceLevel, opposite.best)  # not None: the side is not empty
            queue = level.orders
            price = level.price
            while True:
                maker = queue[0]
                available = maker.remaining
                if not available:  # a dead entry left by a cancel
                    _popleft(queue)
                    level.dead -= 1
                    continue
                if check_stp and maker.account == account:
                    if stp is not _CANCEL_NEWEST:  # cancel_oldest / cancel_both: the maker goes
                        _popleft(queue)
                        level.quantity -= available
                        level.count -= 1
                        maker.remaining = 0
                        maker.reason = _SELF_TRADE_PREVENTED
                        maker.updated_at = timestamp
                        events.append(
                            OrderCanceled(
                                sequence, maker.order_id, available, _SELF_TRADE_PREVENTED
                            )
                        )
                        del by_account[maker.account][maker.key]
                        _push(closed_ids, maker.key)
                    if stp is not _CANCEL_OLDEST:  # cancel_newest / cancel_both: the taker stops
                        stopped = True
                        break
                    if not level.count:
                        break
                    continue
                fill = available if available < remaining else remaining
                trade = Trade(
                    sequence,
                    trade_id,
                    symbol,
                    price,
                    fill,
                    taker_side,
                    taker_id,
                    maker.order_id,
                    account,
                    maker.account,
                    timestamp,
                )
                events.append(trade)
                _push(recent, trade)
                trade_id += 1
                value = price * fill
                notional += value
                filled += fill
                remaining -= fill
                last_price = price
                maker.filled += fill
                maker.notional += value
                maker.updated_at = timestamp
                level.quantity -= fill
                if fill == available:
                    maker.remaining = 0
                    _popleft(queue)
                    level.count -= 1
                    del by_account[maker.account][maker.key]
                    _push(closed_ids, maker.key)
                    if not level.count:
                        break
                else:
                    maker.remaining = available - fill
                if not remaining:
                    break
            if not level.count:
                opposite.drop(key)
            if stopped:
                break
        self._next_trade_id = trade_id
        if filled:
            taker.filled += filled
            taker.notional += notional
            taker.remaining = remaining
            taker.updated_at = timestamp
            book.last_price = last_price
        return stopped

    # -- cancels ----------------------------------------------------------------------------

    def _cancel(self, command: CancelOrder, sequence: int) -> list[Event]:
        order_id = command.order_id
        account = command.account
        order = self._orders.get(order_id)
        if (
            order is None
            or not order.remaining
            or (account is not None and order.account != account)
        ):
            return [self._not_open(order_id, account, sequence)]
        reason = _USER_CANCELED if account is not None else Reason.ADMIN_CANCELED
        remaining = order.remaining
        order.remaining = 0  # dead from here on, also for remove_dead below
        # PriceLevel.remove, inlined.
        level: PriceLevel = order.level  # type: ignore[assignment]  # open orders rest
        level.quantity -= remaining
        level.count -= 1
        if level.count:
            level.dead += 1
            if level.dead > _COMPACT_MIN_DEAD and level.dead > level.count:
                level.remove_dead()
        else:
            level.side.drop(level.key)
        order.reason = reason
        order.updated_at = command.timestamp
        self._close_open(order)
        return [OrderCanceled(sequence, order_id, remaining, reason)]

    def _cancel_all(self, command: CancelAll, sequence: int) -> list[Event]:
        symbol = command.symbol
        orders = self._open_by_account.get(command.account, {})
        doomed = [o for o in orders.values() if symbol is None or o.command.symbol == symbol]
        events: list[Event] = []
        for order in doomed:
            self._cancel_open(order, _USER_CANCELED, events, sequence, command.timestamp)
        return events

    def _not_open(self, order_id: int, account: str | None, sequence: int) -> CommandRejected:
        """The refusal for an order that is not open: known and visible, or not found at all.

        Another account's order answers ``not_found``, exactly like an id that never existed.
        """
        closed = self.order(order_id)
        if closed is not None and (account is None or closed.account == account):
            return CommandRejected(sequence, ErrorCode.ORDER_NOT_OPEN, order_id)
        return CommandRejected(sequence, ErrorCode.NOT_FOUND, order_id)

    def _cancel_open(
        self, order: Order, reason: Reason, events: list[Event], sequence: int, timestamp: int
    ) -> None:
        remaining = order.level.remove(order)  # type: ignore[union-attr]  # open orders rest
        order.reason = reason
        order.updated_at = timestamp
        events.append(OrderCanceled(sequence, order.order_id, remaining, reason))
        self._close_open(order)

    # -- amends -----------------------------------------------------------------------------

    def _amend(self, command: AmendOrder, sequence: int) -> list[Event]:
        order = self._orders.get(command.order_id)
        if order is None or not order.remaining or order.account != command.account:
            return [self._not_open(command.order_id, command.account, sequence)]
        book = self._books[order.command.symbol]
        instrument = book.instrument
        old_price: int = order.price  # type: ignore[assignment]  # open orders are limit orders
        price = old_price if command.price is None else command.price
        quantity = order.quantity if command.quantity is None else command.quantity
        if quantity <= order.filled:
            return [CommandRejected(sequence, ErrorCode.INVALID_AMEND, order.order_id)]
        if not instrument.min_lots <= quantity <= instrument.max_lots:
            return [CommandRejected(sequence, ErrorCode.QUANTITY_OUT_OF_RANGE, order.order_id)]
        timestamp = command.timestamp
        if order.command.side is _BUY:
            own, opposite, limit_key = book.bids, book.asks, price
        else:
            own, opposite, limit_key = book.asks, book.bids, -price

        if price == old_price and quantity <= order.quantity:
            # Same price, same or lower quantity: the order keeps its place in the queue.
            reduction = order.quantity - quantity
            if reduction:
                order.level.quantity -= reduction  # type: ignore[union-attr]
                order.quantity = quantity
                order.remaining -= reduction
                order.updated_at = timestamp
            return [OrderAmended(sequence, order.order_id, price, quantity, True)]

        if price != old_price:
            if not instrument.within_band(price, book.last_price):
                return [CommandRejected(sequence, ErrorCode.PRICE_BAND, order.order_id)]
            if order.command.post_only and opposite.best_key <= limit_key:
                return [CommandRejected(sequence, ErrorCode.POST_ONLY_WOULD_CROSS, order.order_id)]
        # A new price or a larger quantity: the order goes to the back of its (new) level.
        order.level.remove(order)  # type: ignore[union-attr]
        replacement = order.requeued(price, quantity)
        replacement.updated_at = timestamp
        self._orders[order.key] = replacement
        self._open_by_account[order.account][order.key] = replacement
        events: list[Event] = [OrderAmended(sequence, order.order_id, price, quantity, False)]
        if opposite.best_key <= limit_key:
            if self._take(replacement, book, opposite, limit_key, events, sequence, timestamp):
                self._cancel_remainder(
                    replacement, Reason.SELF_TRADE_PREVENTED, events, sequence, timestamp
                )
                self._close_open(replacement)
                return events
            if not replacement.remaining:
                self._close_open(replacement)
                return events
        own.add(replacement, price)
        return events

    # -- closing orders ---------------------------------------------------------------------

    @staticmethod
    def _cancel_remainder(
        order: Order, reason: Reason, events: list[Event], sequence: int, timestamp: int
    ) -> None:
        remaining = order.remaining
        order.remaining = 0
        order.reason = reason
        order.updated_at = timestamp
        events.append(OrderCanceled(sequence, order.order_id, remaining, reason))

    def _close_open(self, order: Order) -> None:
        """Take an order that was open out of its account's index and remember it as closed."""
        del self._open_by_account[order.account][order.key]
        _push(self._closed_ids, order.key)

    def _remember_closed(self, order: Order) -> None:
        """Remember an order that closed on entry, without ever resting."""
        self._orders[order.key] = order
        _push(self._closed_ids, order.key)

    def _forget_closed(self) -> None:
        """Drop the oldest closed orders beyond the capacity (between commands only)."""
        orders, closed_ids, capacity = self._orders, self._closed_ids, self._closed_capacity
        while len(closed_ids) > capacity:
            del orders[_popleft(closed_ids)]
