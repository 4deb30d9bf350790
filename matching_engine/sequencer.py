"""The sequencer: the one writer that owns the book.

Theory of operation
-------------------
Requests put commands on a queue and wait. One asyncio task takes every command waiting (up to
``batch_max_commands``), stamps each with the time, numbers them after the engine's sequence, and
journals the whole batch in one transaction (group commit: one fsync for many commands). Only
after the commit does it apply the commands to the engine, in order, and answer each request with
what its command did.

The read-model rows of the applied commands are written by a second task, the projector, one
write at a time, with whatever accumulated while the previous write was under way. The journal's
commits, which requests wait for, carry nothing else, and the two writes use the database's
cores side by side. Queries merge the rows not written yet over the tables, so nobody waits for
the projector; if a write fails, its rows wait for the next one, and after a crash recovery
writes what the journal holds past the read models' progress marker.

If the commit fails, nothing is applied and every request of the batch is answered with
:class:`Unavailable`; no 2xx is ever given for a command that is not durable. A commit that
failed may still have happened (or may still happen: a stalled disk): the batch is then *in
doubt*, and before anything else is journaled the sequencer reads the journal past its own
sequence and applies what is there, so the engine never diverges from the journal. Clients whose
request failed retry with their ``client_order_id`` and get the original order back.

Every database call goes through the database circuit breaker, with the commit deadline inside
it, so a slow database counts as a failing one; while the breaker is open the batch fails at once.

The queue is bounded: when it is full, a request is refused at once with ``overloaded`` rather
than queued behind work it would time out waiting for (load shedding). The request deadline
counts from the request's arrival (:data:`request_arrival`, set by the gateway), not from its
command's turn in the queue: time spent before, in the rate limiter or waiting for the event loop
of an overloaded process, is taken from the wait here, and a command whose deadline passed before
it was queued is refused as ``overloaded``, definitely not applied. Each command passes the
``gate`` (the degradation modes) when its batch is formed, so a mode change takes effect for
commands still waiting in the queue, too.

A command may come with its request's rate-limit decision still on its way (an *admission*): it
enters the queue from the decision's callback once the limit allows it, so the request waits for
one thing only, and Redis decides while the batch before is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from matching_engine import metrics, tracing
from matching_engine.breaker import Breaker, BreakerOpen
from matching_engine.core import Command, Event, MatchingEngine, stamped
from matching_engine.errors import RateLimited, ServiceError, Unavailable
from matching_engine.journal import Journal
from matching_engine.projection import Projection
from matching_engine.ratelimit import Decision
from matching_engine.settings import Settings
from matching_engine.views import OrderView

__all__ = ["Applied", "Sequencer", "request_arrival"]

log = logging.getLogger(__name__)

# When the request now running came in, in time.monotonic() seconds; None outside a request.
request_arrival: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_arrival", default=None
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one command did: its sequence, its events and the orders it touched, as views."""

    sequence: int
    events: list[Event]
    orders: dict[int, OrderView]


# The command, the future its request awaits, and its request's trace (None while tracing is off).
_Waiter = tuple[Command, "asyncio.Future[Applied]", tracing.CommandTrace | None]
_PROJECTION_RETRY_S = 1.0
# The least time between two read-model writes. Under a steady flow of small batches, a write
# per batch would cost as much as the journal's own commits; waiting a little gathers many
# batches into one write, and queries merge the rows meanwhile.
_PROJECTION_INTERVAL_S = 0.02


class Sequencer:
    def __init__(
        self,
        engine: MatchingEngine,
        journal: Journal,
        settings: Settings,
        breaker: Breaker,
        *,
        gate: Callable[[Command], ServiceError | None] = lambda _command: None,
        last_timestamp: int = 0,
        on_batch: Callable[[int, float], None] | None = None,
        snapshot_due: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self._journal = journal
        self._settings = settings
        self._breaker = breaker
        self._gate = gate
        self._queue: asyncio.Queue[_Waiter] = asyncio.Queue(settings.queue_max_commands)
        self._tasks: list[asyncio.Task[None]] = []
        # Resumed from the journal: after a restart with the clock behind, times still go on.
        self._last_timestamp = last_timestamp
        self._in_doubt: list[tuple[int, Command]] = []
        self.pending = Projection(sequence=engine.sequence)  # applied, not yet in the read models
        self.flushing: Projection | None = None  # being written right now
        self._projected = engine.sequence  # the read models' progress marker, as last written
        self._projection_due = asyncio.Event()
        self._on_batch = on_batch
        self._snapshot_due = snapshot_due
        # Kept from start(): asyncio.get_running_loop() makes a getpid() system call (a fork
        # check), which under load cost more than the rest of submit().
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        metrics.READ_MODEL_LAG.set_function(lambda: self.engine.sequence - self._projected)
        self._tasks = [
            asyncio.create_task(self._run(), name="sequencer"),
            asyncio.create_task(self._project(), name="projector"),
        ]

    async def stop(self) -> None:
        """Stop both tasks. Rows the projector had not written are written by the next start's
        recovery."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            _, future, _ = self._queue.get_nowait()
            if not future.done():
                future.set_exception(Unavailable("the engine is shutting down"))

    def unwritten(self) -> list[Projection]:
        """Read-model rows of applied commands that may not be in the tables yet, oldest first."""
        return [projection for projection in (self.flushing, self.pending) if projection]

    # -- the request side ---------------------------------------------------------------------

    async def submit(
        self,
        command: Command,
        deadline_s: float,
        admission: asyncio.Future[Decision] | None = None,
    ) -> Applied:
        """Sequence, journal and apply ``command``; answer what it did once it is durable.

        With an ``admission`` (its request's rate-limit decision, possibly still on its way from
        Redis), the command is queued once the decision is in, straight from the decision's
        callback, and refused with :class:`RateLimited` when it is a refusal. So the request
        waits once, for its answer, rather than for the decision and then for the journal: the
        decision arrives while the batch before is being committed, and a command is never
        journaled before its limit allowed it.

        Raises :class:`TimeoutError` when there is no answer within ``deadline_s`` of the
        request's arrival (or of now, outside a request), and :class:`Unavailable`
        (``overloaded``) at once when that deadline passed before the command was queued. The
        command stays queued when its caller stops waiting, by the deadline or by being
        cancelled: it may already be in a batch. Its future is then done, and the writer, which
        answers only futures that are not, leaves it alone; a command whose future is done
        before its decision came is never queued. (One timer handle rather than
        ``asyncio.timeout`` and ``asyncio.shield``: those cost several times as much, on every
        order.)
        """
        loop = self._loop or asyncio.get_running_loop()
        arrived = request_arrival.get()
        if arrived is not None:
            deadline_s -= time.monotonic() - arrived
            if deadline_s <= 0:
                metrics.SHED.labels("deadline").inc()
                raise Unavailable("the engine is overloaded; retry later", "overloaded")
        future: asyncio.Future[Applied] = loop.create_future()
        waiter = (command, future, tracing.command_trace())
        if admission is None or admission.done():
            self._enqueue(waiter, admission)
        else:
            admission.add_done_callback(partial(self._enqueue, waiter))
        deadline = loop.call_later(deadline_s, _expire, future)
        try:
            return await future
        finally:
            deadline.cancel()
            # A failure's traceback holds this frame: without the future in it, the future and
            # its exception are freed with the request rather than by the garbage collector,
            # which may not walk them for minutes (matching_engine.runtime).
            del future, waiter

    def _enqueue(self, waiter: _Waiter, admission: asyncio.Future[Decision] | None) -> None:
        """Queue a command its rate limit allowed; otherwise answer its request at once."""
        future = waiter[1]
        if future.done():  # its request stopped waiting before the decision came
            return
        if admission is not None:
            if admission.cancelled():  # the limiter is closing
                future.set_exception(Unavailable("the engine is shutting down"))
                return
            error = admission.exception()
            if error is not None:
                future.set_exception(error)
                return
            decision = admission.result()
            if not decision.allowed:
                future.set_exception(RateLimited(decision))
                return
        try:
            self._queue.put_nowait(waiter)
        except asyncio.QueueFull:
            metrics.SHED.labels("queue").inc()
            future.set_exception(Unavailable("the engine is overloaded; retry later", "overloaded"))

    # -- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._settings.batch_max_commands and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            metrics.QUEUE_DEPTH.set(self._queue.qsize())
            await self._process(batch)

    async def _process(self, waiting: list[_Waiter]) -> None:
        batch = []
        for command, future, trace in waiting:
            refusal = self._gate(command)
            if refusal is None:
                batch.append((command, future, trace))
            elif not future.done():
                future.set_exception(refusal)
        if not batch:
            return
        try:
            await self._resolve_doubt()
        except Exception as error:
            self._fail(batch, error)
            return
        start = self.engine.sequence
        entries = [
            (start + offset, self._stamped(command))
            for offset, (command, _, _) in enumerate(batch, start=1)
        ]
        started = time.perf_counter()
        try:
            with tracing.journal_commit((trace for _, _, trace in batch), len(batch)):
                async with self._breaker.guard(self._settings.db_commit_timeout_s):
                    await self._journal.append(entries)
        except BreakerOpen as error:  # nothing was sent: not in doubt
            self._fail(batch, error)
            return
        except Exception as error:
            # The commit may or may not have happened: settle it before journaling anything else.
            self._in_doubt = entries
            self._fail(batch, error)
            return
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)
        for (sequence, command), (_, future, trace) in zip(entries, batch, strict=True):
            applied = self._apply(sequence, command, trace)
            if not future.done():
                future.set_result(applied)
        self._projection_due.set()
        if self._snapshot_due is not None:
            await self._snapshot_due()

    def _stamped(self, command: Command) -> Command:
        # Times come from here, never from the core, and never run backwards in the journal.
        self._last_timestamp = max(time.time_ns(), self._last_timestamp + 1)
        return stamped(command, self._last_timestamp)

    def _apply(
        self, sequence: int, command: Command, trace: tracing.CommandTrace | None = None
    ) -> Applied:
        started = time.perf_counter()
        events = self.engine.submit(command)
        seconds = time.perf_counter() - started
        assert self.engine.sequence == sequence, "engine and journal sequences diverged"
        metrics.observe_match(self.engine, events, seconds)
        if trace is not None:
            tracing.record_match(trace, command, sequence, len(events), seconds)
        return Applied(sequence, events, self.pending.record(self.engine, sequence, events))

    def _fail(self, batch: list[_Waiter], error: BaseException) -> None:
        log.warning("journal write failed: %s: %s", type(error).__name__, error)
        retry_after = error.retry_after_s if isinstance(error, BreakerOpen) else 1
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(
                    Unavailable(
                        "the journal is unavailable; retry later",
                        retry_after_s=max(1, math.ceil(retry_after)),
                    )
                )

    async def _resolve_doubt(self) -> None:
        """Settle an in-doubt batch by trusting the journal: apply whatever it holds past the
        engine's sequence, whoever wrote it.

        A failed commit may still land later (a stalled disk, a lost replica): its rows then hold
        sequence numbers a new batch also wants, the primary key refuses one of the two, and the
        refused batch is in doubt in turn and settled here. So the engine is always exactly the
        journal's prefix, and only a command that was answered 2xx is known to be in it.
        """
        if not self._in_doubt:
            return
        async with self._breaker.guard():
            journaled = [entry async for entry in self._journal.replay(after=self.engine.sequence)]
        self._in_doubt = []
        for sequence, command in journaled:
            log.warning("applying journaled command %d from an in-doubt commit", sequence)
            self._apply(sequence, command)
        if journaled:
            self._projection_due.set()

    # -- the projector ------------------------------------------------------------------------

    async def _project(self) -> None:
        """Write the read-model rows of applied commands, one write at a time, in order."""
        while True:
            await self._projection_due.wait()
            self._projection_due.clear()
            if not self.pending and self.pending.sequence == self._projected:
                continue
            projection, self.pending = self.pending, Projection(sequence=self.pending.sequence)
            self.flushing = projection
            try:
                async with self._breaker.guard(self._settings.db_commit_timeout_s):
                    await self._journal.write_projection(projection)
            except Exception as error:
                # Keep the rows for the next write, before the ones applied since.
                self.pending = projection.absorb(self.pending)
                self._projection_due.set()
                log.warning(
                    "read-model write up to %d failed: %s: %s",
                    projection.sequence,
                    type(error).__name__,
                    error,
                    extra={"event": "read_model.write_failed", "sequence": projection.sequence},
                )
                pause = _PROJECTION_RETRY_S
            else:
                self._projected = projection.sequence
                pause = _PROJECTION_INTERVAL_S
            finally:
                self.flushing = None
            await asyncio.sleep(pause)


def _expire(future: asyncio.Future[Applied]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
