"""Circuit breakers for asyncio: one ``pybreaker.CircuitBreaker`` per dependency.

pybreaker has no asyncio support of its own: ``call_async`` is Tornado's, and ``call`` on a
coroutine function records a success before the coroutine has even run. What does work is its
``calling()`` context manager around the ``await``. :class:`Breaker` uses it that way and adds
what pybreaker lacks under asyncio:

- a deadline *inside* ``calling()``, so that a dependency that hangs counts as failing (pybreaker
  has no notion of a slow call);
- one probe at a time in half-open: pybreaker admits every concurrent caller, and their late
  successes then report spurious closed → closed transitions;
- cancellation and excluded (business) errors count as neither a failure nor a success. pybreaker
  counts an excluded exception as a success, which resets the failure count and closes a
  half-open breaker on a request that the client abandoned or that the dependency never judged;
- :class:`BreakerOpen` always means that the body did not run. The call that trips the breaker,
  or the probe that reopens it, raises its own error, which says more.

State changes go to Prometheus and to an optional callback (the engine's mode follows the
database breaker). Storage is in memory: pybreaker's Redis storage is synchronous and would block
the event loop, and one process owns the book anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar, TypeVarTuple

import pybreaker
from prometheus_client import Counter, Gauge

__all__ = ["BREAKER_STATE", "BREAKER_TRANSITIONS", "Breaker", "BreakerOpen", "State"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

State = Literal["closed", "open", "half_open"]
_STATES: dict[str, State] = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}

BREAKER_STATE = Gauge(
    "matching_engine_breaker_state",
    "Circuit breaker state by dependency: 1 for the current state, 0 for the others.",
    ["dependency", "state"],
)
BREAKER_TRANSITIONS = Counter(
    "matching_engine_breaker_transitions_total",
    "Circuit breaker state changes by dependency and new state.",
    ["dependency", "to_state"],
)


class BreakerOpen(pybreaker.CircuitBreakerError):
    """The breaker refused the call without running it; try again in ``retry_after_s``."""

    def __init__(self, dependency: str, retry_after_s: float) -> None:
        super().__init__(f"{dependency} circuit breaker is open, retry in {retry_after_s:.3f}s")
        self.dependency = dependency
        self.retry_after_s = retry_after_s


class _Circuit(pybreaker.CircuitBreaker):
    """pybreaker's state machine, with some exceptions left out of its accounting."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        storage: pybreaker.CircuitBreakerStorage,
        listener: pybreaker.CircuitBreakerListener,
        neutral: tuple[type[BaseException], ...],
    ) -> None:
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            state_storage=storage,
            listeners=[listener],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._neutral = neutral

    def is_system_error(self, exception: BaseException) -> bool:
        # pybreaker asks this of every exception leaving ``calling()`` before it touches a
        # counter or a state. Raising instead of answering propagates the exception unchanged
        # and leaves the breaker exactly as it was: neither a failure nor a success.
        if isinstance(exception, self._neutral):
            raise exception
        return True


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = _STATES[old_state.name] if old_state is not None else None
        new = _STATES[new_state.name]
        # pybreaker re-announces a state it is already in (a late failure reopening an open
        # breaker); only real changes are transitions.
        if old is not None and old != new:
            self._breaker._transitioned(old, new)


class Breaker:
    """A circuit breaker around one dependency, for ``async`` code.

    ``fail_max`` consecutive failures open it; after ``reset_timeout_s`` one probe goes through,
    and its success closes the breaker while its failure opens it again. Every guarded call runs
    under a deadline (``timeout_s`` unless the call gives its own), and reaching it is a failure.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout_s: float,
        timeout_s: float,
        on_state_change: Callable[[str, str], None] | None = None,
        exclude: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._on_state_change = on_state_change
        # pybreaker tells its listeners of a new state before its storage records it: keep our
        # own copy, so that a state-change callback sees the state it is told about.
        self._state: State = "closed"
        self._probing = False
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._circuit = _Circuit(
            name,
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            storage=self._storage,
            listener=_Listener(self),
            neutral=(asyncio.CancelledError, *exclude),
        )
        self._publish(self._state)

    @property
    def fail_max(self) -> int:
        return self._circuit.fail_max

    @property
    def reset_timeout_s(self) -> float:
        return self._circuit.reset_timeout

    @property
    def state(self) -> State:
        return self._state

    @property
    def opened_at(self) -> datetime | None:
        """When the breaker last opened (UTC), while it is open; None otherwise."""
        return self._storage.opened_at if self.state == "open" else None

    @property
    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when it is not open."""
        opened_at = self.opened_at
        if opened_at is None:
            return 0.0
        reopens = opened_at + timedelta(seconds=self.reset_timeout_s)
        return max(0.0, (reopens - datetime.now(UTC)).total_seconds())

    @contextlib.asynccontextmanager
    async def guard(self, timeout_s: float | None = None) -> AsyncIterator[None]:
        """Run the body through the breaker, under a deadline; :class:`BreakerOpen` if refused."""
        probe = self._admit()
        try:
            with self._circuit.calling():
                async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
                    yield
        finally:
            if probe:
                self._probing = False

    async def call(
        self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts, timeout_s: float | None = None
    ) -> T:
        """``await fn(*args)`` through :meth:`guard`."""
        async with self.guard(timeout_s):
            return await fn(*args)

    def _admit(self) -> bool:
        """Refuse the call unless it may run now; True when it is the half-open probe."""
        state = self.state
        if state == "closed":
            return False
        if state == "open" and (wait := self.retry_after_s) > 0:
            raise BreakerOpen(self.name, wait)
        if self._probing:  # the probe's outcome decides within its deadline
            raise BreakerOpen(self.name, self.timeout_s)
        # Either half-open, or open with the reset timeout elapsed, in which case pybreaker
        # moves to half-open when this call enters ``calling()``.
        self._probing = True
        return True

    def _transitioned(self, old: State, new: State) -> None:
        self._state = new
        self._publish(new)
        BREAKER_TRANSITIONS.labels(self.name, new).inc()
        log.log(
            logging.INFO if new == "closed" else logging.WARNING,
            "%s circuit breaker %s -> %s",
            self.name,
            old,
            new,
            extra={
                "event": "breaker.transition",
                "dependency": self.name,
                "from_state": old,
                "to_state": new,
            },
        )
        if self._on_state_change is not None:
            # Called inside pybreaker's bookkeeping: a failing callback must not corrupt it.
            try:
                self._on_state_change(old, new)
            except Exception:
                log.exception("%s circuit breaker state-change callback failed", self.name)

    def _publish(self, state: State) -> None:
        for each in _STATES.values():
            BREAKER_STATE.labels(self.name, each).set(1 if each == state else 0)
