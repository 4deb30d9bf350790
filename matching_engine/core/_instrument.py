"""Instruments and the edge between decimal values and the integer grid of the core.

Theory of operation
-------------------
Inside the core every price is an ``int`` number of ticks and every quantity an ``int`` number of
lots: exact, hashable and fast to compare. Decimals exist only at the edge, in the methods of
:class:`Instrument` that turn a decimal price or quantity into ticks or lots and back. A value that
is not an exact multiple of the tick or lot size is refused with the precise reason, never
rounded: rounding a price silently changes what the trader asked for.

The price band is kept as an exact fraction so that checking it is integer arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException
from fractions import Fraction

from ._errors import InvalidCommand, InvalidLot, InvalidTick, QuantityOutOfRange

__all__ = ["MAX_UNITS", "SYMBOL_PATTERN", "Instrument"]

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,12}(-[A-Z0-9]{1,12})?$")

# Prices in ticks and quantities in lots stay below this bound, so that any product of the two
# (the notional of a fill) stays exact in a 128-bit column and in JSON consumers' decimals.
MAX_UNITS = 10**15


def _positive_decimal(name: str, value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise InvalidCommand(f"{name} must be a positive finite decimal, got {value!r}")
    return value


def _units(value: Decimal, step: Decimal, what: str, error: type[InvalidCommand]) -> int:
    """Number of whole ``step`` in ``value``; refuses values off the grid."""
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise InvalidCommand(f"{what} must be a positive finite decimal, got {value!r}")
    try:
        units, remainder = divmod(value, step)
    except DecimalException:
        raise InvalidCommand(f"{what} {value} is too large") from None
    if remainder:
        raise error(f"{what} {value} is not a multiple of {step}")
    if units >= MAX_UNITS:
        raise InvalidCommand(f"{what} {value} is too large")
    return int(units)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable symbol and its grid: tick size, lot size, quantity range and price band."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    price_band_pct: Decimal | None = None
    # Derived, integer forms used by the matching hot path.
    min_lots: int = field(init=False, repr=False, compare=False)
    max_lots: int = field(init=False, repr=False, compare=False)
    _band: Fraction | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not SYMBOL_PATTERN.fullmatch(self.symbol):
            raise InvalidCommand(f"symbol {self.symbol!r} does not match {SYMBOL_PATTERN.pattern}")
        _positive_decimal("tick_size", self.tick_size)
        _positive_decimal("lot_size", self.lot_size)
        min_lots = _units(self.min_quantity, self.lot_size, "min_quantity", InvalidLot)
        max_lots = _units(self.max_quantity, self.lot_size, "max_quantity", InvalidLot)
        if min_lots > max_lots:
            raise InvalidCommand("min_quantity must not exceed max_quantity")
        band = None
        if self.price_band_pct is not None:
            _positive_decimal("price_band_pct", self.price_band_pct)
            band = Fraction(self.price_band_pct) / 100
        object.__setattr__(self, "min_lots", min_lots)
        object.__setattr__(self, "max_lots", max_lots)
        object.__setattr__(self, "_band", band)

    # -- decimal <-> grid -------------------------------------------------------------------

    def price_to_ticks(self, price: Decimal) -> int:
        """The price in ticks; raises :class:`InvalidTick` when it is off the tick grid."""
        return _units(price, self.tick_size, "price", InvalidTick)

    def quantity_to_lots(self, quantity: Decimal) -> int:
        """The quantity in lots, within the instrument's range; raises when off grid or range."""
        lots = _units(quantity, self.lot_size, "quantity", InvalidLot)
        self.check_lots(lots)
        return lots

    def check_lots(self, lots: int) -> None:
        if not self.min_lots <= lots <= self.max_lots:
            raise QuantityOutOfRange(
                f"quantity must be between {self.min_quantity} and {self.max_quantity}"
            )

    def ticks_to_price(self, ticks: int) -> Decimal:
        return ticks * self.tick_size

    def lots_to_quantity(self, lots: int) -> Decimal:
        return lots * self.lot_size

    # -- price band -------------------------------------------------------------------------

    def within_band(self, price_ticks: int, reference_ticks: int | None) -> bool:
        """True when ``price_ticks`` is within ±band of the reference; the edges are inside."""
        band = self._band
        if band is None or reference_ticks is None:
            return True
        # |price - reference| <= reference * numerator / denominator, in integers.
        return (
            abs(price_ticks - reference_ticks) * band.denominator
            <= reference_ticks * band.numerator
        )
