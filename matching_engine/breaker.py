"""Circuit breakers for asyncio: one ``pybreaker.CircuitBreaker`` per dependency.

pybreaker has no asyncio support of its own: ``call_async`` is Tornado's, and ``call`` on a
coroutine function records a success before the coroutine has even run. What does work is its
``calling()`` context manager around the ``await``, or, cheaper, handing the outcome of the
``await`` to the state the call was admitted in, which is what ``calling()`` does
(:class:`_Guard`). :class:`Breaker` uses pybreaker that way and adds what it lacks under asyncio:

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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
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

    def guard(self, timeout_s: float | None = None) -> _Guard:
        """Run the body of ``async with`` through the breaker, under a deadline;
        :class:`BreakerOpen` if refused."""
        return _Guard(self, self.timeout_s if timeout_s is None else timeout_s)

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


class _Guard:
    """One call through a :class:`Breaker`: what ``async with breaker.guard()`` enters.

    Written out, rather than an ``asynccontextmanager`` around pybreaker's ``calling()`` and
    ``asyncio.timeout``, because the journal and the rate limiter guard every batch they send:
    those layers cost about 60 µs a call in the server under load (timed in place), some 7% of a
    core at half the peak order rate. While the breaker is closed, the body runs outside
    ``calling()`` and its outcome goes to the closed state's own handlers afterwards, which is
    what ``calling()`` does with it; a success with no failure counted changes nothing in
    pybreaker and is not reported. A probe (half-open) goes through ``calling()`` itself, which
    also moves an open breaker to half-open. The deadline is one timer that cancels the task and
    turns the cancellation into :class:`TimeoutError`, unless someone else cancelled the task
    too, as ``asyncio.timeout`` does.
    """

    __slots__ = (
        "_breaker",
        "_calling",
        "_cancelling",
        "_closed_state",
        "_expired",
        "_probe",
        "_task",
        "_timeout_s",
        "_timer",
    )

    def __init__(self, breaker: Breaker, timeout_s: float) -> None:
        self._breaker = breaker
        self._timeout_s = timeout_s

    async def __aenter__(self) -> None:
        breaker = self._breaker
        self._probe = breaker._admit()  # BreakerOpen unless closed, or this is the probe
        self._calling: contextlib.AbstractContextManager[None] | None = None
        self._closed_state: pybreaker.CircuitBreakerState | None = None
        if self._probe:
            calling = breaker._circuit.calling()
            try:
                calling.__enter__()
            except BaseException:
                breaker._probing = False
                raise
            self._calling = calling
        else:
            self._closed_state = breaker._circuit.state
        task = asyncio.current_task()
        assert task is not None, "a guard runs in a task"
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        self._timer = task.get_loop().call_later(self._timeout_s, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        try:
            if (
                self._expired
                and kind is asyncio.CancelledError
                and self._task.uncancel() <= self._cancelling
            ):
                try:
                    raise TimeoutError from error
                except TimeoutError as timeout:
                    self._settle(timeout)
                    raise
            self._settle(error)
        finally:
            if self._probe:
                self._breaker._probing = False

    def _settle(self, error: BaseException | None) -> None:
        """Hand the outcome to pybreaker; raise what it raises instead of ``error``, if anything."""
        if self._calling is not None:
            if error is None:
                self._calling.__exit__(None, None, None)
                return
            try:
                self._calling.__exit__(type(error), error, error.__traceback__)
            except BaseException as raised:
                if raised is not error:
                    raise
            return
        state = self._closed_state
        assert state is not None
        if error is None:
            if self._breaker._storage.counter:  # earlier failures: a success resets them
                state._handle_success()
            return
        try:
            state._handle_error(error)  # counts it (or not), then raises it
        except BaseException as raised:
            if raised is not error:
                raise
