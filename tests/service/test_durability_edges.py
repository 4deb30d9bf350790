"""Edges of durability: a torn audit file, clocks that step back, concurrent mode changes, an
answer that comes after its request's deadline, and what such a late answer leaves behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from matching_engine import sequencer
from matching_engine.core import Instrument
from matching_engine.errors import Unavailable
from matching_engine.migrate import upgrade_async
from matching_engine.schema import admin_audit
from matching_engine.service import EngineService
from tests.leaks import collector_off
from tests.service.factories import settings_for


async def _open(tmp_path: Path, **overrides: Any) -> EngineService:
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}", tmp_path, **overrides)
    await upgrade_async(settings)
    return await EngineService.open(settings)


@pytest.mark.asyncio
async def test_a_line_torn_by_a_crash_does_not_spoil_the_audit_file(tmp_path: Path) -> None:
    service = await _open(tmp_path)
    try:
        await service.set_mode(actor="sre", mode="post_only", symbol=None, reason="first")
    finally:
        await service.close()
    with service.settings.audit_path.open("a", encoding="utf-8") as file:
        file.write('{"audit_id": "torn", "at": 1')  # a crash in the middle of a write

    service = await _open(tmp_path)
    try:
        await service.set_mode(actor="sre", mode="cancel_only", symbol=None, reason="second")
    finally:
        await service.close()

    service = await _open(tmp_path)
    try:
        assert service.mode_status()["mode"] == "cancel_only"
        reasons = [entry.reason for entry in await service.audit_trail(10)]
        assert reasons[:2] == ["second", "first"]
    finally:
        await service.close()
    lines = service.settings.audit_path.read_text().splitlines()
    assert json.loads(lines[-1])["reason"] == "second"


class HeldDatabase:
    """The database, with every transaction held at its start until released."""

    def __init__(self, database: AsyncEngine) -> None:
        self.database = database
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        self.entered.set()
        await self.release.wait()
        async with self.database.begin() as connection:
            yield connection


@pytest.mark.asyncio
async def test_an_entry_recorded_while_the_trail_is_being_copied_is_copied_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await _open(tmp_path)
    held = HeldDatabase(service.database)
    monkeypatch.setattr(service.audit, "_database", held)
    try:
        await service.set_mode(actor="sre", mode="post_only", symbol=None, reason="first")
        await held.entered.wait()  # the copy of "first" is under way
        await service.set_mode(actor="sre", mode="normal", symbol=None, reason="second")
        held.release.set()
        await service.audit.close()
        async with service.database.connect() as connection:
            copied = (await connection.scalars(select(admin_audit.c.reason))).all()
        assert sorted(copied) == ["first", "second"]
    finally:
        await service.close()


@pytest.mark.asyncio
async def test_times_go_on_after_a_restart_with_the_clock_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await _open(tmp_path)
    try:
        await service.add_instrument(
            Instrument("ABC-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        before, _ = await service.place_order(
            "trader", symbol="ABC-USD", side="buy", type="limit", quantity=Decimal(1),
            price=Decimal(10), time_in_force=None, post_only=False, stp="none",
            client_order_id=None,
        )  # fmt: skip
    finally:
        await service.close()

    real = sequencer.time.time_ns
    monkeypatch.setattr(sequencer.time, "time_ns", lambda: real() - 3_600 * 10**9)
    service = await _open(tmp_path)
    try:
        canceled = await service.cancel_order("trader", before.order_id)
    finally:
        await service.close()

    assert canceled.updated_at > before.updated_at


@pytest.mark.asyncio
async def test_concurrent_mode_changes_leave_the_trail_and_the_engine_agreeing(
    tmp_path: Path,
) -> None:
    service = await _open(tmp_path)
    try:
        modes = ["post_only", "cancel_only", "normal", "read_only", "post_only", "cancel_only"]
        await asyncio.gather(
            *(
                service.set_mode(actor=f"sre-{i}", mode=mode, symbol=None, reason=f"change {i}")
                for i, mode in enumerate(modes)
            )
        )
        live = service.mode_status()["manual_mode"]
        newest = (await service.audit_trail(1))[0]
    finally:
        await service.close()
    assert newest.after == {"mode": live}

    service = await _open(tmp_path)
    try:
        assert service.mode_status()["manual_mode"] == live
    finally:
        await service.close()


def _arrived_ago(seconds: float) -> None:
    """As the gateway does when a request comes in, but ``seconds`` earlier."""
    sequencer.request_arrival.set(time.monotonic() - seconds)


async def _place_late(service: EngineService, client_order_id: str) -> None:
    await service.place_order(
        "trader", symbol="DL-USD", side="buy", type="limit", quantity=Decimal(1),
        price=Decimal(10), time_in_force=None, post_only=False, stp="none",
        client_order_id=client_order_id,
    )  # fmt: skip


def _hold_journal(service: EngineService, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every journal commit until the event this answers is set."""
    release = asyncio.Event()
    append = service._journal.append

    async def held_append(*args: object, **kwargs: object) -> None:
        await release.wait()
        await append(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service._journal, "append", held_append)
    return release


@pytest.mark.asyncio
async def test_an_order_past_its_deadline_is_answered_503_and_still_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await _open(tmp_path, request_deadline_s=0.5)
    try:
        await service.add_instrument(
            Instrument("DL-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        release = _hold_journal(service, monkeypatch)  # longer than the request may wait
        with pytest.raises(Unavailable, match="deadline"):
            await _place_late(service, "late-1")
        release.set()
        # The command was already queued: it is applied when the write lands, exactly once.
        for _ in range(100):
            if service.engine.open_order_count:
                break
            await asyncio.sleep(0.01)
        [order] = service.engine.open_orders("trader")
        assert order.client_order_id == "late-1"
    finally:
        await service.close()


@pytest.mark.asyncio
async def test_the_deadline_counts_from_the_requests_arrival(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await _open(tmp_path, request_deadline_s=1.0)
    try:
        await service.add_instrument(
            Instrument("DL-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        sequence = service.sequence

        # Its whole deadline went by before it reached the queue: refused, not applied.
        _arrived_ago(1.2)
        with pytest.raises(Unavailable) as refused:
            await _place_late(service, "late-1")
        assert refused.value.code == "overloaded"
        assert service.sequence == sequence

        # Most of it went by: the wait for the journal gets only what is left.
        release = _hold_journal(service, monkeypatch)
        _arrived_ago(0.8)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(Unavailable, match="deadline"):
            await _place_late(service, "late-2")
        assert loop.time() - began < 0.5
        release.set()
    finally:
        sequencer.request_arrival.set(None)
        await service.close()


@pytest.mark.asyncio
async def test_a_request_that_timed_out_leaves_no_cycle_for_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The future failed with TimeoutError goes with the request: were it in a cycle with the
    waiting frame, and frozen by a collector pass while waiting, it would outlive it."""
    service = await _open(tmp_path, request_deadline_s=0.2)
    try:
        await service.add_instrument(
            Instrument("DL-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        with collector_off() as failed_futures:
            release = _hold_journal(service, monkeypatch)
            with pytest.raises(Unavailable, match="deadline"):
                await _place_late(service, "late-1")
            release.set()
            await _place_late(service, "after")  # the writer lets go of the late one's batch
            leftovers = failed_futures(TimeoutError)
        assert leftovers == []
    finally:
        await service.close()
