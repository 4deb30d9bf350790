"""A deliberately naive reference engine for the property tests.

It is written from the contract (the "Orders" section of the REST contract), not from the real
engine: no price levels, no queues, no indexes. Every resting order of every symbol sits in one
plain Python list in arrival order, and the best maker for an incoming order is found by filtering
that list and sorting it by price, then by arrival. Everything is recomputed on every step: slow,
short, and easy to check by reading.

Conventions shared with the real engine, so the two can be compared output for output:

* every submitted command consumes one sequence number, starting at 1, whatever its outcome;
* an order's id is the sequence number of the command that created it;
* trade ids count from 1;
* prices are integer ticks and quantities integer lots.

Where the contract leaves a choice open, the reference takes these:

* checks run in this order: unknown symbol, quantity range, client order id (duplicate or
  conflict), then, for a limit price, the band, then post-only; a command refused before the
  client order id check does not use up that id;
* a fok order is tried on a copy of the book first: if matching (self-trade prevention included)
  would not fill it whole, nothing happens to the book, no resting order is canceled, and the
  order is canceled with ``fok_unfillable``;
* an amend is checked in this order: the order is open and the caller's, quantity above the
  filled quantity, quantity range, then (only when the price changes) the band and the post-only
  cross; a refused amend changes nothing;
* an amend that loses priority matches with the order's own ``stp``, like a new taker;
* a cancel-all cancels in order id order.

Each command answers the list of *records* it caused, in the order things happened. A record is a
plain tuple whose first item names its kind:

    ("instrument_added", symbol)
    ("accepted", order_id)
    ("order_rejected", order_id, reason)
    ("trade", trade_id, symbol, price, quantity, taker_side, taker_id, maker_id,
              taker_account, maker_account)
    ("canceled", order_id, quantity, reason)
    ("amended", order_id, price, quantity, priority_kept)
    ("duplicate", order_id)
    ("command_rejected", code, order_id_or_None)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["RefInstrument", "RefOrder", "ReferenceEngine"]

# Orders closed for one of these reasons never reached the book: their status is "rejected".
_REJECTIONS = ("post_only_would_cross", "price_band")


@dataclass
class RefInstrument:
    symbol: str
    min_lots: int
    max_lots: int
    band_pct: Fraction | None = None  # e.g. Fraction(5) for ±5 %


@dataclass
class RefOrder:
    order_id: int
    account: str
    symbol: str
    side: str  # "buy" | "sell"
    type: str  # "limit" | "market"
    price: int | None
    quantity: int
    time_in_force: str
    post_only: bool
    stp: str
    client_order_id: str | None
    # The sequence number of the command that last sent the order to the back of its level:
    # its creation, or an amend that lost time priority. Smaller means older.
    priority: int
    filled: int = 0
    remaining: int = 0
    canceled: int = 0
    reason: str | None = None

    @property
    def status(self) -> str:
        if self.reason in _REJECTIONS:
            return "rejected"
        if self.remaining > 0:
            return "partially_filled" if self.filled > 0 else "new"
        if self.canceled > 0:
            return "canceled"
        return "filled"

    @property
    def is_open(self) -> bool:
        return self.remaining > 0


@dataclass
class ReferenceEngine:
    sequence: int = 0
    next_trade_id: int = 1
    instruments: dict[str, RefInstrument] = field(default_factory=dict)
    last_price: dict[str, int] = field(default_factory=dict)
    # Every order ever created, by id.
    orders: dict[int, RefOrder] = field(default_factory=dict)
    # The book: every resting order of every symbol, oldest first.
    resting: list[RefOrder] = field(default_factory=list)
    # (account, client_order_id) -> (order id, the parameters it was created with)
    client_ids: dict[tuple[str, str], tuple[int, tuple[object, ...]]] = field(default_factory=dict)

    # -- commands ----------------------------------------------------------------------------

    def add_instrument(self, instrument: RefInstrument) -> list[tuple[object, ...]]:
        self.sequence += 1
        if instrument.symbol in self.instruments:
            return [("command_rejected", "instrument_exists", None)]
        self.instruments[instrument.symbol] = instrument
        return [("instrument_added", instrument.symbol)]

    def new_order(
        self,
        account: str,
        symbol: str,
        side: str,
        type: str,
        quantity: int,
        price: int | None = None,
        time_in_force: str | None = None,
        post_only: bool = False,
        stp: str = "cancel_newest",
        client_order_id: str | None = None,
    ) -> list[tuple[object, ...]]:
        self.sequence += 1
        seq = self.sequence
        if time_in_force is None:
            time_in_force = "gtc" if type == "limit" else "ioc"
        instrument = self.instruments.get(symbol)
        if instrument is None:
            return [("command_rejected", "unknown_symbol", None)]
        if quantity < instrument.min_lots or quantity > instrument.max_lots:
            return [("command_rejected", "quantity_out_of_range", None)]
        if client_order_id is not None:
            params = (symbol, side, type, quantity, price, time_in_force, post_only, stp)
            known = self.client_ids.get((account, client_order_id))
            if known is not None:
                original_id, original_params = known
                if original_params == params:
                    return [("duplicate", original_id)]
                return [("command_rejected", "client_order_id_conflict", original_id)]
            self.client_ids[(account, client_order_id)] = (seq, params)

        order = RefOrder(
            order_id=seq,
            account=account,
            symbol=symbol,
            side=side,
            type=type,
            price=price,
            quantity=quantity,
            time_in_force=time_in_force,
            post_only=post_only,
            stp=stp,
            client_order_id=client_order_id,
            priority=seq,
            remaining=quantity,
        )
        self.orders[seq] = order

        if price is not None and not self._within_band(symbol, price):
            return [self._reject(order, "price_band")]
        if post_only and self._makers(order, price):
            return [self._reject(order, "post_only_would_cross")]

        records: list[tuple[object, ...]] = [("accepted", seq)]
        if time_in_force == "fok" and not self._fok_fills_whole(order):
            self._cancel_rest_of(order, "fok_unfillable", records)
            return records
        if self._match(order, price, records):
            self._cancel_rest_of(order, "self_trade_prevented", records)
        elif order.remaining > 0:
            if time_in_force == "gtc":
                self.resting.append(order)
            elif type == "market":
                self._cancel_rest_of(order, "no_liquidity", records)
            else:
                self._cancel_rest_of(order, "ioc_remainder", records)
        return records

    def cancel(self, account: str | None, order_id: int) -> list[tuple[object, ...]]:
        """Cancel one order; ``account=None`` is an administrative cancel."""
        self.sequence += 1
        order = self.orders.get(order_id)
        if order is None or (account is not None and order.account != account):
            return [("command_rejected", "not_found", order_id)]
        if not order.is_open:
            return [("command_rejected", "order_not_open", order_id)]
        records: list[tuple[object, ...]] = []
        self.resting.remove(order)
        reason = "admin_canceled" if account is None else "user_canceled"
        self._cancel_rest_of(order, reason, records)
        return records

    def cancel_all(self, account: str, symbol: str | None = None) -> list[tuple[object, ...]]:
        self.sequence += 1
        doomed = [
            o
            for o in self.resting
            if o.account == account and (symbol is None or o.symbol == symbol)
        ]
        records: list[tuple[object, ...]] = []
        for order in sorted(doomed, key=lambda o: o.order_id):
            self.resting.remove(order)
            self._cancel_rest_of(order, "user_canceled", records)
        return records

    def amend(
        self, account: str, order_id: int, price: int | None = None, quantity: int | None = None
    ) -> list[tuple[object, ...]]:
        self.sequence += 1
        seq = self.sequence
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            return [("command_rejected", "not_found", order_id)]
        if not order.is_open:
            return [("command_rejected", "order_not_open", order_id)]
        instrument = self.instruments[order.symbol]
        assert order.price is not None  # only gtc limit orders rest
        new_price = order.price if price is None else price
        new_quantity = order.quantity if quantity is None else quantity
        if new_quantity <= order.filled:
            return [("command_rejected", "invalid_amend", order_id)]
        if new_quantity < instrument.min_lots or new_quantity > instrument.max_lots:
            return [("command_rejected", "quantity_out_of_range", order_id)]

        if new_price == order.price and new_quantity <= order.quantity:
            # Same price, no increase: the order keeps its place (nothing to move in the list).
            order.remaining -= order.quantity - new_quantity
            order.quantity = new_quantity
            return [("amended", order_id, new_price, new_quantity, True)]

        if new_price != order.price:
            if not self._within_band(order.symbol, new_price):
                return [("command_rejected", "price_band", order_id)]
            if order.post_only and self._makers(order, new_price):
                return [("command_rejected", "post_only_would_cross", order_id)]

        # Loses time priority: out of the list, new terms, then in again as if it just arrived.
        self.resting.remove(order)
        order.price = new_price
        order.quantity = new_quantity
        order.remaining = new_quantity - order.filled
        order.priority = seq
        records: list[tuple[object, ...]] = [("amended", order_id, new_price, new_quantity, False)]
        if self._match(order, new_price, records):
            self._cancel_rest_of(order, "self_trade_prevented", records)
        elif order.remaining > 0:
            self.resting.append(order)
        return records

    # -- queries -----------------------------------------------------------------------------

    def depth(self, symbol: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """``(bids, asks)`` as [(price, total remaining, order count)], best price first."""
        sides = []
        for side, best_first in (("buy", True), ("sell", False)):
            totals: dict[int, list[int]] = {}
            for o in self.resting:
                if o.symbol == symbol and o.side == side:
                    assert o.price is not None
                    level = totals.setdefault(o.price, [0, 0])
                    level[0] += o.remaining
                    level[1] += 1
            sides.append([(p, q, n) for p, (q, n) in sorted(totals.items(), reverse=best_first)])
        return sides[0], sides[1]

    def open_order_ids(self, account: str) -> list[int]:
        return sorted(o.order_id for o in self.resting if o.account == account)

    # -- matching ----------------------------------------------------------------------------

    def _makers(self, taker: RefOrder, limit: int | None) -> list[RefOrder]:
        """Resting orders the taker could trade with, best first (price, then arrival)."""
        found: list[tuple[int, int, RefOrder]] = []
        for o in self.resting:
            if o.symbol != taker.symbol or o.side == taker.side:
                continue
            assert o.price is not None
            if limit is not None:
                if taker.side == "buy" and o.price > limit:
                    continue
                if taker.side == "sell" and o.price < limit:
                    continue
            # Cheapest ask first for a buyer, dearest bid first for a seller; then the oldest.
            best_first = o.price if taker.side == "buy" else -o.price
            found.append((best_first, o.priority, o))
        found.sort(key=lambda entry: entry[:2])
        return [o for _, _, o in found]

    def _match(self, taker: RefOrder, limit: int | None, records: list[tuple[object, ...]]) -> bool:
        """Trade the taker against the book; answer True when self-trade prevention stopped it."""
        while taker.remaining > 0:
            makers = self._makers(taker, limit)
            if not makers:
                return False
            maker = makers[0]
            if maker.account == taker.account and taker.stp != "none":
                if taker.stp in ("cancel_oldest", "cancel_both"):
                    self.resting.remove(maker)
                    self._cancel_rest_of(maker, "self_trade_prevented", records)
                if taker.stp in ("cancel_newest", "cancel_both"):
                    return True
                continue
            quantity = min(taker.remaining, maker.remaining)
            assert maker.price is not None
            records.append(
                (
                    "trade",
                    self.next_trade_id,
                    taker.symbol,
                    maker.price,
                    quantity,
                    taker.side,
                    taker.order_id,
                    maker.order_id,
                    taker.account,
                    maker.account,
                )
            )
            self.next_trade_id += 1
            self.last_price[taker.symbol] = maker.price
            taker.filled += quantity
            taker.remaining -= quantity
            maker.filled += quantity
            maker.remaining -= quantity
            if maker.remaining == 0:
                self.resting.remove(maker)
        return False

    def _fok_fills_whole(self, order: RefOrder) -> bool:
        """Whether matching would fill the order completely: try it on a throwaway copy.

        The copy holds copies of the resting orders and of the taker, nothing else.
        """
        scratch = ReferenceEngine(instruments=self.instruments)
        scratch.resting = [copy.copy(o) for o in self.resting]
        taker = copy.copy(order)
        scratch._match(taker, taker.price, [])
        return taker.remaining == 0

    def _within_band(self, symbol: str, price: int) -> bool:
        band = self.instruments[symbol].band_pct
        last = self.last_price.get(symbol)
        if band is None or last is None:
            return True
        return abs(price - last) <= Fraction(last) * band / 100

    # -- closing -----------------------------------------------------------------------------

    def _reject(self, order: RefOrder, reason: str) -> tuple[object, ...]:
        order.canceled = order.remaining
        order.remaining = 0
        order.reason = reason
        return ("order_rejected", order.order_id, reason)

    @staticmethod
    def _cancel_rest_of(order: RefOrder, reason: str, records: list[tuple[object, ...]]) -> None:
        quantity = order.remaining
        order.canceled += quantity
        order.remaining = 0
        order.reason = reason
        records.append(("canceled", order.order_id, quantity, reason))
