"""Price levels, book sides and the per-instrument book.

Theory of operation
-------------------
A side keeps its levels in a dict keyed by a *sort key* plus those keys in order
(:class:`SortedKeys`). The key is the price in ticks for asks and the negated price for bids, so
on both sides the smallest key is the best price and "crosses a limit" is the single comparison
``best_key <= limit_key``. The best key and its level are cached, so reading the best price is
O(1); a new level costs O(log levels) in the sorted keys, and so does removing an empty one. An
empty side has ``best_key == EMPTY``, a value above every real key, so the matching loop needs no
emptiness test.

A level is a FIFO queue (``deque``) with lazy deletion: a canceled order stays in the queue as a
dead entry (``remaining == 0``) and is dropped when it reaches the head, so cancelling is O(1)
and never searches the queue, even in the middle of a level hundreds of orders deep. A resting
order points at its level and a level at its side, so a cancel needs no lookup at all. The level
keeps its live quantity and count exact at every step; when dead entries outnumber live ones it
compacts, so memory stays proportional to the live orders (amortised O(1) per cancel).

Invariants: ``level.quantity`` is the sum of ``remaining`` of its live orders, ``level.count`` their
number, and a level with ``count == 0`` is not in the side.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final, NamedTuple

from ._events import Trade
from ._instrument import Instrument
from ._order import Order

__all__ = ["EMPTY", "BookSide", "DepthLevel", "OrderBook", "PriceLevel", "SortedKeys"]

# Larger than any sort key (prices stay below 10**15 ticks); the best key of an empty side.
EMPTY = 1 << 62
# Compact a level once it holds more than this many dead entries and more dead than live ones.
_COMPACT_MIN_DEAD = 32


class DepthLevel(NamedTuple):
    price: int
    quantity: int
    order_count: int


# Snapshots pickle these classes. Each is rebuilt through its constructor (a compiled class must
# be: its attributes exist only once __init__ has run), then given its state; both spelled out,
# so the plain-Python and the compiled core read each other's snapshots.
class PriceLevel:
    __slots__ = ("count", "dead", "key", "orders", "price", "quantity", "side")

    def __init__(self, side: BookSide, key: int, price: int) -> None:
        self.side = side
        self.key = key
        self.price = price
        self.orders: deque[Order] = deque()
        self.quantity = 0
        self.count = 0
        self.dead = 0

    def __reduce__(self) -> tuple[object, ...]:
        state = (self.orders, self.quantity, self.count, self.dead)
        return PriceLevel, (self.side, self.key, self.price), state

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.orders, self.quantity, self.count, self.dead = state

    def remove(self, order: Order) -> int:
        """Take a live order out of the level, lazily: zero its ``remaining`` and answer it."""
        remaining = order.remaining
        order.remaining = 0  # dead from here on, also for remove_dead below
        self.quantity -= remaining
        self.count -= 1
        if not self.count:
            self.side.drop(self.key)
        else:
            self.dead += 1
            if self.dead > _COMPACT_MIN_DEAD and self.dead > self.count:
                self.remove_dead()
        return remaining

    def remove_dead(self) -> None:
        """Drop the dead entries; amortised O(1) per cancel as it runs once dead > live."""
        self.orders = deque(order for order in self.orders if order.remaining)
        self.dead = 0

    def live_orders(self) -> list[Order]:
        return [order for order in self.orders if order.remaining]


# Keys per chunk of SortedKeys: a chunk is split past twice this and merged below half of it.
_CHUNK: Final = 256


class SortedKeys:
    """Distinct integer keys in ascending order: the smallest in O(1); adding or removing one
    in O(log n), plus moving at most a chunk's worth of references.

    The keys are in sorted chunks of at most ``2 * _CHUNK``, with each chunk's largest key in
    ``maxima`` for the binary search: the layout of sortedcontainers' ``SortedList``. It is
    written out here because this module is compiled and that library is interpreted Python:
    levels come and go often enough that its calls cost the matching about 6% of its
    instructions (callgrind), against a fraction of that for this.
    """

    __slots__ = ("chunks", "maxima", "size")

    def __init__(self, keys: Iterable[int] = ()) -> None:
        ordered = sorted(set(keys))
        self.chunks: list[list[int]] = [
            ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)
        ]
        self.maxima: list[int] = [chunk[-1] for chunk in self.chunks]
        self.size = len(ordered)

    def __reduce__(self) -> tuple[object, ...]:
        return SortedKeys, (list(self),)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        for chunk in self.chunks:
            yield from chunk

    def first(self) -> int:
        """The smallest key (there must be one)."""
        return self.chunks[0][0]

    def add(self, key: int) -> None:
        """Add ``key``, which must not be there yet."""
        chunks, maxima = self.chunks, self.maxima
        self.size += 1
        if not chunks:
            chunks.append([key])
            maxima.append(key)
            return
        index = bisect_left(maxima, key)
        if index == len(maxima):  # above every key: the end of the last chunk
            index -= 1
            chunk = chunks[index]
            chunk.append(key)
            maxima[index] = key
        else:
            chunk = chunks[index]
            insort(chunk, key)
        self._split_if_long(index)

    def remove(self, key: int) -> None:
        """Remove ``key``, which must be there."""
        chunks, maxima = self.chunks, self.maxima
        index = bisect_left(maxima, key)
        chunk = chunks[index]
        del chunk[bisect_left(chunk, key)]
        self.size -= 1
        if chunk:
            maxima[index] = chunk[-1]
            if len(chunk) < _CHUNK // 2 and len(chunks) > 1:
                self._merge(index if index + 1 < len(chunks) else index - 1)
        else:
            del chunks[index]
            del maxima[index]

    def _merge(self, index: int) -> None:
        """Join chunk ``index`` and the next, splitting the result again if it is too long."""
        chunks, maxima = self.chunks, self.maxima
        chunk = chunks[index]
        chunk.extend(chunks[index + 1])
        del chunks[index + 1]
        del maxima[index + 1]
        maxima[index] = chunk[-1]
        self._split_if_long(index)

    def _split_if_long(self, index: int) -> None:
        chunk = self.chunks[index]
        if len(chunk) > 2 * _CHUNK:
            upper = chunk[_CHUNK:]
            del chunk[_CHUNK:]
            self.chunks.insert(index + 1, upper)
            self.maxima[index] = chunk[-1]
            self.maxima.insert(index + 1, upper[-1])


class BookSide:
    __slots__ = ("best", "best_key", "keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # +1: key = price (asks); -1: key = -price (bids)
        self.levels: dict[int, PriceLevel] = {}
        self.keys = SortedKeys()
        self.best_key = EMPTY
        # The level at best_key (None when empty): the matching loop reads it without a lookup.
        self.best: PriceLevel | None = None

    def __reduce__(self) -> tuple[object, ...]:
        return BookSide, (self.sign,), (self.levels, self.keys, self.best_key)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.levels, self.keys, self.best_key = state
        self.best = self.levels.get(self.best_key)

    def add(self, order: Order, price: int) -> None:
        """Append an order at the back of its level's queue."""
        key = self.sign * price
        level = self.levels.get(key)
        if level is None:
            level = self.new_level(key, price)
        level.orders.append(order)
        level.quantity += order.remaining
        level.count += 1
        order.level = level

    def new_level(self, key: int, price: int) -> PriceLevel:
        level = self.levels[key] = PriceLevel(self, key, price)
        self.keys.add(key)
        if key < self.best_key:
            self.best_key = key
            self.best = level
        return level

    def drop(self, key: int) -> None:
        """Remove the level at ``key`` (it has no live order left)."""
        # Clearing the queue breaks the level <-> dead order reference cycle, so reference
        # counting frees the level without waiting for the cyclic garbage collector.
        self.levels.pop(key).orders.clear()
        keys = self.keys
        keys.remove(key)
        if key == self.best_key:
            self.best_key = keys.first() if keys.size else EMPTY
            self.best = self.levels.get(self.best_key)

    @property
    def best_price(self) -> int | None:
        return None if self.best_key == EMPTY else self.sign * self.best_key

    def depth(self, limit: int) -> list[DepthLevel]:
        """Up to ``limit`` levels, best first."""
        levels = self.levels
        return [
            DepthLevel(level.price, level.quantity, level.count)
            for level in (levels[key] for key in islice(self.keys, limit))
        ]

    def __len__(self) -> int:
        return len(self.levels)


class OrderBook:
    """Everything the engine keeps per instrument."""

    __slots__ = (
        "asks",
        "banded",
        "bids",
        "instrument",
        "last_price",
        "max_lots",
        "min_lots",
        "symbol",
        "trades",
    )

    def __init__(self, instrument: Instrument, trade_history: int) -> None:
        self.instrument = instrument
        # What every new order reads, copied out of the (uncompiled) instrument: an attribute
        # of a compiled class is read directly, an instrument's through Python's lookup.
        self.symbol = instrument.symbol
        self.min_lots = instrument.min_lots
        self.max_lots = instrument.max_lots
        self.banded = instrument.price_band_pct is not None
        self.bids = BookSide(-1)
        self.asks = BookSide(+1)
        self.last_price: int | None = None
        # Recent trades, oldest first; the Trade events themselves (immutable).
        self.trades: deque[Trade] = deque(maxlen=trade_history)

    def __reduce__(self) -> tuple[object, ...]:
        arguments = (self.instrument, self.trades.maxlen)
        return OrderBook, arguments, (self.bids, self.asks, self.last_price, self.trades)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.bids, self.asks, self.last_price, self.trades = state

    @property
    def best_bid_price(self) -> int | None:
        return self.bids.best_price

    @property
    def best_ask_price(self) -> int | None:
        return self.asks.best_price

    @property
    def spread(self) -> int | None:
        bid, ask = self.bids.best_price, self.asks.best_price
        return None if bid is None or ask is None else ask - bid
