"""The engine service: recovery, the sequencer and the queries, behind one object.

The gateway talks only to :class:`EngineService`. Writes become core commands and go through the
sequencer (durable before they are applied and answered); reads are served from memory where the
engine has the answer (open orders, recent closes, the book, recent trades) and from the read
models otherwise, with the rows not yet written laid over them, so a reader always sees at least
every acknowledged change.

Degradation: every database call goes through one circuit breaker. While it is open the engine
is read-only by itself (writes answer 503 ``read_only`` at once, reads from memory go on), a probe
tries the database a few times a second, and the engine comes back to the mode the SREs set as
soon as the breaker closes. SREs change modes through :meth:`EngineService.set_mode`, which
never waits on the database (see :mod:`matching_engine.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine import metrics
from matching_engine.accounts import AccountRecord, AccountStore, Principal, Role
from matching_engine.audit import AuditEntry, AuditLog
from matching_engine.breaker import Breaker, BreakerOpen
from matching_engine.core import (
    CORE_BUILD,
    AddInstrument,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    CommandRejected,
    DepthLevel,
    DuplicateOrder,
    ErrorCode,
    Instrument,
    InvalidCommand,
    MatchingEngine,
    NewOrder,
    Order,
    OrderCanceled,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    UnknownSymbol,
)
from matching_engine.db import create_engine
from matching_engine.errors import NotFound, Refused, ServiceError, Unavailable
from matching_engine.journal import Journal
from matching_engine.modes import HALTED, Mode, ModeState, Refusal
from matching_engine.projection import Projection
from matching_engine.ratelimit import Decision, RateLimiter
from matching_engine.recovery import RecoveryReport, recover
from matching_engine.sequencer import Applied, Sequencer
from matching_engine.settings import Settings
from matching_engine.snapshotter import ForkedSnapshot
from matching_engine.views import (
    BookView,
    FillView,
    OrderView,
    TradeView,
    order_view,
    scaled,
    trade_view,
)

__all__ = ["EngineService", "database_breaker"]

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")
_PROBE_EVERY_S = 0.25
_PROBE_TIMEOUT_S = 1.0
_MODE_RETRY_AFTER_S = 5


def database_breaker(
    settings: Settings, on_state_change: Callable[[str, str], None] | None = None
) -> Breaker:
    """The circuit breaker every database call goes through."""
    return Breaker(
        "database",
        fail_max=settings.db_breaker_fail_max,
        reset_timeout_s=settings.db_breaker_reset_s,
        timeout_s=settings.db_statement_timeout_s,
        on_state_change=on_state_change,
    )


def _enum(kind: type[_E], value: str, name: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidCommand(f"{name} must be one of {choices}") from None


def _order_id(text: str) -> int:
    """Order ids are opaque strings outside; an id that cannot be ours is simply not found."""
    if not text.isdigit() or len(text) > 18:
        raise NotFound("no such order")
    return int(text)


class EngineService:
    def __init__(
        self,
        settings: Settings,
        database: AsyncEngine,
        engine: MatchingEngine,
        recovery: RecoveryReport,
    ) -> None:
        self.settings = settings
        self.database = database
        self.engine = engine
        self.recovery = recovery
        self.modes = ModeState()
        self.db_breaker = database_breaker(settings, self._database_state_changed)
        self.accounts = AccountStore(database, settings, guard=self.db_breaker.guard)
        self.audit = AuditLog(settings.audit_path, database, self.db_breaker)
        self.rate_limiter = RateLimiter(settings)
        self._journal = Journal(database)
        self._sequencer = Sequencer(
            engine,
            self._journal,
            settings,
            self.db_breaker,
            gate=self._mode_refusal,
            last_timestamp=recovery.last_timestamp,
            on_batch=self._observe_batch,
            snapshot_due=self._snapshot_if_due,
        )
        self._snapshot_sequence = recovery.snapshot_sequence
        self._snapshot_task: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._published_mode: Mode | None = None
        self._mode_lock = asyncio.Lock()
        self.ready = False

    @classmethod
    async def open(cls, settings: Settings) -> EngineService:
        """Recover the engine from the database and start the sequencer."""
        database = create_engine(settings)
        journal = Journal(database)
        try:
            engine, report = await recover(journal, settings)
            snapshot_taken_at = await journal.snapshot_taken_at()
        except BaseException:
            await journal.close()
            await database.dispose()
            raise
        await journal.close()
        metrics.RECOVERY_SECONDS.set(report.seconds)
        metrics.COMMANDS_REPLAYED.set(report.replayed)
        metrics.SEQUENCE.set(engine.sequence)
        metrics.SNAPSHOT_SEQUENCE.set(report.snapshot_sequence)
        if snapshot_taken_at is not None:
            metrics.record_snapshot(snapshot_taken_at / 1e9)
        metrics.publish_best_prices(engine)
        log.info(
            "recovered to sequence %d: snapshot at %d, %d commands replayed in %.2f s",
            engine.sequence,
            report.snapshot_sequence,
            report.replayed,
            report.seconds,
            extra={
                "event": "recovery",
                "sequence": engine.sequence,
                "snapshot_sequence": report.snapshot_sequence,
                "replayed": report.replayed,
                "duration_s": round(report.seconds, 6),
                "core": CORE_BUILD,
            },
        )
        service = cls(settings, database, engine, report)
        try:
            await service.accounts.prepare()
            for entry in await service.audit.load():
                service._apply_mode_entry(entry)
        except BaseException:
            await service.rate_limiter.close()
            await database.dispose()
            raise
        service._publish_modes("recovery")
        service._sequencer.start()
        service._prober = asyncio.create_task(service._probe_database(), name="database-probe")
        service.ready = True
        return service

    async def close(self) -> None:
        self.ready = False
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await self._sequencer.stop()
        await self.snapshot_stored()
        await self._journal.close()
        await self.audit.close()
        await self.rate_limiter.close()
        await self.database.dispose()

    @property
    def sequence(self) -> int:
        return self.engine.sequence

    # -- writes -------------------------------------------------------------------------------

    async def place_order(
        self,
        account_id: str,
        *,
        symbol: str,
        side: str,
        type: str,
        quantity: Decimal,
        price: Decimal | None,
        time_in_force: str | None,
        post_only: bool,
        stp: str,
        client_order_id: str | None,
        admission: asyncio.Future[Decision] | None = None,
    ) -> tuple[OrderView, bool]:
        """Enter an order; answers it and whether this was an idempotent retry.

        ``admission`` is the order's rate-limit decision, when the caller has asked for it but
        not waited for it (see :meth:`Sequencer.submit`)."""
        instrument = self._instrument(symbol)
        command = NewOrder(
            account=account_id,
            symbol=symbol,
            side=_enum(Side, side, "side"),
            type=_enum(OrderType, type, "type"),
            quantity=instrument.quantity_to_lots(quantity),
            price=None if price is None else instrument.price_to_ticks(price),
            time_in_force=None
            if time_in_force is None
            else _enum(TimeInForce, time_in_force, "time_in_force"),
            post_only=post_only,
            stp=_enum(SelfTradePrevention, stp, "stp"),
            client_order_id=client_order_id,
        )
        applied = await self._submit(command, admission=admission)
        first = applied.events[0]
        if isinstance(first, DuplicateOrder):
            return await self.get_order(account_id, str(first.order_id)), True
        outcome = applied.orders[applied.sequence]
        metrics.orders_by_outcome(outcome.status, outcome.reason or "none").inc()
        return outcome, False

    async def cancel_order(self, account_id: str, order_id: str) -> OrderView:
        identifier = _order_id(order_id)
        await self._open_order(account_id, identifier)
        applied = await self._submit(CancelOrder(account_id, identifier))
        return await self._with_all_fills(applied.orders[identifier])

    async def cancel_all(self, account_id: str, symbol: str | None) -> list[str]:
        applied = await self._submit(CancelAll(account_id, symbol))
        return [str(e.order_id) for e in applied.events if isinstance(e, OrderCanceled)]

    async def amend_order(
        self,
        account_id: str,
        order_id: str,
        *,
        price: Decimal | None,
        quantity: Decimal | None,
    ) -> OrderView:
        identifier = _order_id(order_id)
        order = await self._open_order(account_id, identifier)
        instrument = self._instrument(order.symbol)
        command = AmendOrder(
            account_id,
            identifier,
            price=None if price is None else instrument.price_to_ticks(price),
            quantity=None if quantity is None else instrument.quantity_to_lots(quantity),
        )
        applied = await self._submit(command, order.symbol)
        return await self._with_all_fills(applied.orders[identifier])

    async def add_instrument(
        self, instrument: Instrument, *, actor: str, request_id: str | None = None
    ) -> Instrument:
        await self._submit(AddInstrument(instrument))
        after = {
            "tick_size": str(instrument.tick_size),
            "lot_size": str(instrument.lot_size),
            "min_quantity": str(instrument.min_quantity),
            "max_quantity": str(instrument.max_quantity),
            "price_band_pct": None
            if instrument.price_band_pct is None
            else str(instrument.price_band_pct),
        }
        await self.audit.record(
            AuditEntry.new(
                actor=actor,
                action="instrument.add",
                target=instrument.symbol,
                before=None,
                after=after,
                reason="instrument listed",
                request_id=request_id,
            )
        )
        return instrument

    async def create_account(
        self, name: str, role: Role, *, actor: str, request_id: str | None = None
    ) -> tuple[AccountRecord, str]:
        principal, api_key = await self._read(lambda: self.accounts.create(name, role))
        record = await self._read(lambda: self.accounts.get(principal.account_id))
        assert record is not None
        await self.audit.record(
            AuditEntry.new(
                actor=actor,
                action="account.create",
                target=principal.account_id,
                before=None,
                after={"name": name, "role": role.value},
                reason="account created",
                request_id=request_id,
            )
        )
        return record, api_key

    async def list_accounts(self) -> list[AccountRecord]:
        return await self._read(self.accounts.list)

    async def authenticate(self, api_key: str) -> Principal | None:
        return await self._read(lambda: self.accounts.authenticate(api_key))

    async def _submit(
        self,
        command: Command,
        symbol: str | None = None,
        admission: asyncio.Future[Decision] | None = None,
    ) -> Applied:
        refusal = self._mode_refusal(command, symbol)
        if refusal is not None:
            raise refusal
        try:
            applied = await self._sequencer.submit(
                command, self.settings.request_deadline_s, admission
            )
        except TimeoutError:
            # The command may still be applied: a retry with its client_order_id is safe.
            raise Unavailable("no answer within the request deadline; retry later") from None
        first = applied.events[0] if applied.events else None
        if isinstance(first, CommandRejected):
            order_id = first.order_id
            if first.code is ErrorCode.NOT_FOUND and order_id is not None:
                # The core only remembers recent closes; the read model knows the rest.
                account = getattr(command, "account", None)
                if account and await self._forgotten_order(account, order_id):
                    raise Refused(ErrorCode.ORDER_NOT_OPEN)
            raise Refused(first.code)
        return applied

    async def _open_order(self, account_id: str, order_id: int) -> Order:
        """The caller's order, which must be open: 404 when not theirs, 409 when closed.

        Checked before sequencing so refusals cost no journal write. Every open order is in
        memory, so only a refusal may need the read model (to tell 409 from 404). An order that
        is not open now can never be open again, so the answer cannot go stale; an open one is
        sequenced and the engine has the last word. While the engine is read-only nothing is
        looked up: the write would be refused anyway, and the database may be the reason.
        """
        if self.modes.global_mode is Mode.READ_ONLY:
            raise self._refusal_error(Refusal.READ_ONLY, None)
        order = self.engine.order(order_id)
        if order is not None and order.account == account_id:
            if not order.is_open:
                raise Refused(ErrorCode.ORDER_NOT_OPEN)
            return order
        if await self._forgotten_order(account_id, order_id):
            raise Refused(ErrorCode.ORDER_NOT_OPEN)
        raise NotFound("no such order")

    async def _forgotten_order(self, account_id: str, order_id: int) -> OrderView | None:
        """The caller's order that the engine no longer remembers: its newest row not written
        yet, else the table's (the database may be down: then 503)."""
        projections = self._unwritten()
        view = next(
            (p.orders[order_id] for p in reversed(projections) if order_id in p.orders), None
        ) or await self._read(lambda: self._journal.order(account_id, order_id))
        return view if view is not None and view.account_id == account_id else None

    # -- reads --------------------------------------------------------------------------------

    def instruments(self) -> list[Instrument]:
        return self.engine.instruments()

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self.engine.instrument(symbol)
        if instrument is None:
            raise UnknownSymbol(f"unknown symbol {symbol}")
        return instrument

    def book(self, symbol: str, depth: int) -> BookView:
        instrument = self.engine.instrument(symbol)
        if instrument is None:
            raise NotFound(f"unknown symbol {symbol}")
        tick, lot = instrument.tick_size, instrument.lot_size
        bids, asks = self.engine.depth(symbol, depth)
        return BookView(
            symbol=symbol,
            sequence=self.engine.sequence,
            bids=[_level(level, tick, lot) for level in bids],
            asks=[_level(level, tick, lot) for level in asks],
        )

    async def trades(self, symbol: str, limit: int) -> list[TradeView]:
        instrument = self.engine.instrument(symbol)
        if instrument is None:
            raise NotFound(f"unknown symbol {symbol}")
        recent = self.engine.recent_trades(symbol, limit)
        if len(recent) == limit or len(recent) == self.engine.trade_count:
            return [trade_view(trade, instrument) for trade in recent]
        projections = self._unwritten()
        stored = await self._read(lambda: self._journal.trades(symbol, limit))
        unwritten = [t for p in projections for t in p.trades if t.symbol == symbol]
        return _newest({t.trade_id: t for t in [*stored, *unwritten]}.values(), limit)

    async def get_order(self, account_id: str, order_id: str) -> OrderView:
        """The caller's order with all its fills; another account's order is not found."""
        identifier = _order_id(order_id)
        order = self.engine.order(identifier)
        view: OrderView | None = None
        if order is not None:
            if order.account == account_id:
                instrument = self._instrument(order.symbol)
                view = order_view(order, instrument)
        else:
            view = await self._forgotten_order(account_id, identifier)
        if view is None:
            raise NotFound("no such order")
        return await self._with_all_fills(view)

    async def list_orders(
        self,
        account_id: str,
        *,
        symbol: str | None = None,
        status: str = "all",
        client_order_id: str | None = None,
        limit: int = 100,
    ) -> list[OrderView]:
        def wanted(view: OrderView) -> bool:
            return (
                view.account_id == account_id
                and (symbol is None or view.symbol == symbol)
                and (client_order_id is None or view.client_order_id == client_order_id)
                and (status == "all" or view.is_open == (status == "open"))
            )

        if status == "open":  # memory has every open order, exactly
            views = [
                order_view(order, self._instrument(order.symbol))
                for order in self.engine.open_orders(account_id, symbol)
            ]
            return [view for view in views if wanted(view)][:limit]
        projections = self._unwritten()
        stored = await self._read(
            lambda: self._journal.orders(
                account_id,
                symbol=symbol,
                open_only=None if status == "all" else False,
                client_order_id=client_order_id,
                limit=limit,
            )
        )
        merged: dict[int, OrderView] = {}
        fresh = [
            *stored,
            *(view for projection in projections for view in projection.orders.values()),
            *(
                order_view(o, self._instrument(o.symbol))
                for o in self.engine.open_orders(account_id, symbol)
            ),
        ]
        for view in fresh:  # the newest state of each order wins, wherever it was read
            known = merged.get(int(view.order_id))
            if known is None or view.updated_at >= known.updated_at:
                merged[int(view.order_id)] = view
        views = [view for view in merged.values() if wanted(view)]
        views.sort(key=lambda view: int(view.order_id), reverse=True)
        return views[:limit]

    async def list_fills(
        self, account_id: str, *, symbol: str | None = None, limit: int = 100
    ) -> list[FillView]:
        projections = self._unwritten()
        stored = await self._read(
            lambda: self._journal.fills(account_id, symbol=symbol, limit=limit)
        )
        unwritten = [
            fill
            for projection in projections
            for fill in projection.fills
            if fill.account_id == account_id and (symbol is None or fill.symbol == symbol)
        ]
        merged = {(fill.trade_id, fill.order_id): fill for fill in [*stored, *unwritten]}
        fills = sorted(
            merged.values(), key=lambda f: (int(f.trade_id), int(f.order_id)), reverse=True
        )
        return fills[:limit]

    async def _with_all_fills(self, view: OrderView) -> OrderView:
        order_id = int(view.order_id)
        projections = self._unwritten()
        unwritten = [
            fill for p in projections for fill in p.fills if int(fill.order_id) == order_id
        ]
        known = {fill.trade_id: fill for fill in [*unwritten, *view.fills]}
        stored: list[FillView] = []
        if sum(fill.quantity for fill in known.values()) != view.filled_quantity:
            # Some fills are only in the read model (the database may be down: then 503).
            stored = await self._read(lambda: self._journal.fills_of_order(order_id))
        by_trade = {fill.trade_id: fill for fill in [*stored, *known.values()]}
        fills = tuple(sorted(by_trade.values(), key=lambda fill: int(fill.trade_id)))
        return view._replace(fills=fills)

    def _unwritten(self) -> list[Projection]:
        """Applied changes not yet in the read models, oldest first. Callers take this list
        before they read the tables, so rows written meanwhile are in one or the other."""
        return self._sequencer.unwritten()

    # -- degradation --------------------------------------------------------------------------

    async def _read(self, query: Callable[[], Awaitable[_T]]) -> _T:
        """Run a database read through the breaker; a failing database answers 503 at once."""
        try:
            async with self.db_breaker.guard():
                return await query()
        except BreakerOpen as error:
            raise Unavailable(
                "the database is unavailable; retry later",
                retry_after_s=max(1, math.ceil(error.retry_after_s)),
            ) from None
        except (OSError, TimeoutError, SQLAlchemyError) as error:
            log.warning("database read failed: %s: %s", type(error).__name__, error)
            raise Unavailable("the database is unavailable; retry later") from None

    def _mode_refusal(self, command: Command, symbol: str | None = None) -> ServiceError | None:
        if isinstance(command, NewOrder):
            symbol = command.symbol
        elif symbol is None and isinstance(command, AmendOrder):
            order = self.engine.order(command.order_id)
            symbol = None if order is None else order.symbol
        refusal = self.modes.refusal(command, symbol)
        return None if refusal is None else self._refusal_error(refusal, symbol)

    def _refusal_error(self, refusal: Refusal, symbol: str | None) -> ServiceError:
        retry_after = _MODE_RETRY_AFTER_S
        if self.modes.database_down:
            retry_after = max(1, math.ceil(self.db_breaker.retry_after_s))
        if refusal is Refusal.HALTED:
            assert symbol is not None
            detail = f"{symbol} is halted: {self.modes.halted[symbol]}"
        else:
            reason = self.modes.effective_reason or "set by an SRE"
            detail = f"the engine is {self.modes.global_mode.value}: {reason}"
        return Unavailable(detail, refusal.value, retry_after)

    def _database_state_changed(self, old: str, new: str) -> None:
        down = new != "closed"
        if down != self.modes.database_down:
            self.modes.database_down = down
            log.warning(
                "database breaker %s -> %s: engine %s",
                old,
                new,
                self.modes.global_mode,
                extra={
                    "event": "mode.changed",
                    "cause": "database_breaker",
                    "breaker_from": old,
                    "breaker_to": new,
                    "mode": self.modes.global_mode.value,
                },
            )
            self._publish_modes("database_breaker")

    async def _probe_database(self) -> None:
        """Ask the database a trivial question a few times a second, through the breaker.

        This is what opens the breaker when the database dies while no write is in flight, and
        what closes it again (the half-open probe) while writes are refused as read-only.
        """
        while True:
            await asyncio.sleep(_PROBE_EVERY_S)
            try:
                async with (
                    self.db_breaker.guard(_PROBE_TIMEOUT_S),
                    self.database.connect() as connection,
                ):
                    await connection.execute(text("SELECT 1"))
            except Exception:  # counted by the breaker; nothing else to do
                continue
            if self.audit.unwritten:
                await self.audit.flush_quietly()

    async def set_mode(
        self,
        *,
        actor: str,
        mode: str,
        symbol: str | None,
        reason: str,
        request_id: str | None = None,
    ) -> dict[str, object]:
        """Set the engine-wide mode, or halt / resume one symbol. Never waits on the database."""
        reason = reason.strip()
        if not reason:
            raise InvalidCommand("a reason is required")
        # One change at a time, so that the order changes are applied in is the order of their
        # times in the trail, which is the order a restart replays them in.
        async with self._mode_lock:
            return await self._set_mode(actor, mode, symbol, reason, request_id)

    async def _set_mode(
        self, actor: str, mode: str, symbol: str | None, reason: str, request_id: str | None
    ) -> dict[str, object]:
        if symbol is None:
            before = {"mode": self.modes.manual.value}
            after = {"mode": _enum(Mode, mode, "mode").value}
        else:
            if self.engine.instrument(symbol) is None:
                raise UnknownSymbol(f"unknown symbol {symbol}")
            if mode not in (HALTED, Mode.NORMAL):
                raise InvalidCommand("a symbol's mode is halted or normal")
            before = {"mode": HALTED if symbol in self.modes.halted else Mode.NORMAL.value}
            after = {"mode": mode}
        entry = AuditEntry.new(
            actor=actor,
            action="mode.set",
            target=symbol,
            before=before,
            after=after,
            reason=reason,
            request_id=request_id,
        )
        entry = await self.audit.record(entry)  # durable on local disk before it takes effect
        self._apply_mode_entry(entry)
        self._publish_modes("sre")
        log.warning(
            "mode set by %s: %s %s -> %s (%s)",
            actor,
            symbol or "engine",
            before["mode"],
            after["mode"],
            reason,
            extra={
                "event": "mode.set",
                "cause": "sre",
                "actor": actor,
                "target": symbol or "engine",
                "from_mode": before["mode"],
                "to_mode": after["mode"],
                "reason": reason,
                "mode": self.modes.global_mode.value,
            },
        )
        return self.mode_status()

    def _apply_mode_entry(self, entry: AuditEntry) -> None:
        if entry.action != "mode.set" or entry.after is None:
            return
        if entry.target is None:
            self.modes.set_global(Mode(entry.after["mode"]), entry.reason)
        else:
            self.modes.set_symbol(entry.target, entry.after["mode"] == HALTED, entry.reason)

    def mode_status(self) -> dict[str, object]:
        return {
            "mode": self.modes.global_mode.value,
            "symbols": dict.fromkeys(sorted(self.modes.halted), HALTED),
            "effective_reason": self.modes.effective_reason,
            "manual_mode": self.modes.manual.value,
            "database": self.db_breaker.state,
            "rate_limiter": self.rate_limiter.backend_state,
        }

    async def audit_trail(self, limit: int) -> list[AuditEntry]:
        return await self.audit.newest(limit)

    def _publish_modes(self, cause: str) -> None:
        current = self.modes.global_mode
        for mode in Mode:
            metrics.MODE.labels(mode.value).set(1 if mode is current else 0)
        metrics.SYMBOL_HALTED.clear()
        for symbol in self.modes.halted:
            metrics.SYMBOL_HALTED.labels(symbol).set(1)
        if current is not self._published_mode:  # only a real change of the mode in effect
            metrics.MODE_CHANGES.labels(current.value, cause).inc()
            self._published_mode = current

    # -- bookkeeping --------------------------------------------------------------------------

    def _observe_batch(self, size: int, seconds: float) -> None:
        metrics.JOURNAL_BATCH_SIZE.observe(size)
        metrics.JOURNAL_COMMIT_SECONDS.observe(seconds)

    async def _snapshot_if_due(self) -> None:
        metrics.SEQUENCE.set(self.engine.sequence)
        sequence = self.engine.sequence
        if sequence - self._snapshot_sequence < self.settings.snapshot_every_commands:
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return  # one at a time: the next batch asks again
        # Whatever happens, the next attempt waits for another interval: a failing database must
        # not cost a snapshot after every batch.
        self._snapshot_sequence = sequence
        try:
            # The sequencer waits only for the fork: the child has the engine as it is now.
            child = ForkedSnapshot(self.engine)
        except OSError as error:
            self._snapshot_failed(sequence, error)
            return
        self._snapshot_task = asyncio.create_task(
            self._store_snapshot(sequence, child), name=f"snapshot-{sequence}"
        )

    async def snapshot_stored(self) -> None:
        """Wait until the snapshot in progress, if any, is stored (or has failed); bounded by the
        child's deadline and the commit deadline."""
        if self._snapshot_task is not None:
            await self._snapshot_task

    async def _store_snapshot(self, sequence: int, child: ForkedSnapshot) -> None:
        """Wait for the child's bytes and store them, through the breaker with the commit
        deadline like every other write."""
        try:
            state = await asyncio.to_thread(child.collect, self.settings.snapshot_timeout_s)
            async with self.db_breaker.guard(self.settings.db_commit_timeout_s):
                taken_at = await self._journal.save_snapshot(sequence, state)
        except Exception as error:
            self._snapshot_failed(sequence, error)
            return
        metrics.SNAPSHOT_SEQUENCE.set(sequence)
        metrics.record_snapshot(taken_at / 1e9)
        log.info(
            "snapshot stored at sequence %d (%d bytes)",
            sequence,
            len(state),
            extra={"event": "snapshot", "sequence": sequence, "bytes": len(state)},
        )

    @staticmethod
    def _snapshot_failed(sequence: int, error: Exception) -> None:
        log.warning(
            "snapshot at %d failed: %s: %s",
            sequence,
            type(error).__name__,
            error,
            extra={"event": "snapshot.failed", "sequence": sequence},
        )


def _level(level: DepthLevel, tick: Decimal, lot: Decimal) -> tuple[Decimal, Decimal, int]:
    return scaled(level.price, tick), scaled(level.quantity, lot), level.order_count


def _newest(trades: Iterable[TradeView], limit: int) -> list[TradeView]:
    return sorted(trades, key=lambda trade: int(trade.trade_id), reverse=True)[:limit]
