"""Degradation modes: what the engine accepts, decided in one place.

Theory of operation
-------------------
Modes, from least to most restrictive: ``normal``, ``post_only`` (new orders must be post-only),
``cancel_only`` (only cancels), per symbol ``halted`` (no new orders or amends for the symbol;
cancels allowed), and ``read_only`` (no writes). The effective mode of a symbol is the more
restrictive of the global mode and the symbol's.

The global mode has two sources. SREs set one by hand (``manual``); it stays until an SRE changes
it. The engine adds ``read_only`` by itself while the database is unreachable (its circuit
breaker is open) and drops it when the breaker closes. The global mode is the more restrictive of
the two, so the engine never claims to take writes it cannot make durable, and comes back to
exactly what the SREs had set once the database returns.

This module is pure state; the service feeds it audit entries and breaker changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from matching_engine.core import (
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    NewOrder,
)

__all__ = ["HALTED", "Mode", "ModeState", "Refusal"]


class Mode(StrEnum):
    NORMAL = "normal"
    POST_ONLY = "post_only"
    CANCEL_ONLY = "cancel_only"
    READ_ONLY = "read_only"


HALTED = "halted"
_RANK = {Mode.NORMAL: 0, Mode.POST_ONLY: 1, Mode.CANCEL_ONLY: 2, HALTED: 3, Mode.READ_ONLY: 4}
_AUTOMATIC_REASON = "database unavailable (circuit breaker open)"


class Refusal(StrEnum):
    """The 503 codes of the REST contract for a write the mode does not allow."""

    READ_ONLY = "read_only"
    CANCEL_ONLY = "cancel_only"
    POST_ONLY_MODE = "post_only_mode"
    HALTED = "halted"


def _stricter(one: str, other: str) -> str:
    return one if _RANK[one] >= _RANK[other] else other


@dataclass
class ModeState:
    manual: Mode = Mode.NORMAL
    manual_reason: str | None = None
    halted: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    database_down: bool = False

    @property
    def global_mode(self) -> Mode:
        return Mode.READ_ONLY if self.database_down else self.manual

    def effective(self, symbol: str | None = None) -> str:
        mode: str = self.global_mode
        if symbol is not None and symbol in self.halted:
            mode = _stricter(mode, HALTED)
        return mode

    @property
    def effective_reason(self) -> str | None:
        if self.database_down and self.manual is not Mode.READ_ONLY:
            return _AUTOMATIC_REASON
        return self.manual_reason

    def set_global(self, mode: Mode, reason: str) -> None:
        self.manual, self.manual_reason = mode, reason

    def set_symbol(self, symbol: str, halted: bool, reason: str) -> None:
        if halted:
            self.halted[symbol] = reason
        else:
            self.halted.pop(symbol, None)

    def refusal(self, command: Command, symbol: str | None = None) -> Refusal | None:
        """Why the current mode refuses ``command``, or None when it may go ahead.

        ``symbol`` is the symbol of the order an amend targets (an amend does not carry it).
        """
        if self.global_mode is Mode.READ_ONLY:
            return Refusal.READ_ONLY
        if isinstance(command, CancelOrder | CancelAll | AddInstrument):
            return None
        if isinstance(command, NewOrder):
            symbol = command.symbol
        mode = self.effective(symbol)
        if mode == HALTED:
            return Refusal.HALTED
        if mode is Mode.CANCEL_ONLY:
            return Refusal.CANCEL_ONLY
        if mode is Mode.POST_ONLY and isinstance(command, NewOrder) and not command.post_only:
            return Refusal.POST_ONLY_MODE
        assert isinstance(command, NewOrder | AmendOrder)
        return None
