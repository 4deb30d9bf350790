"""Snapshots pickled by a forked child: the engine as it was at the fork, whatever the server does
next; a child that fails or hangs is reaped and reported; orders do not wait for a snapshot."""

from __future__ import annotations

import os
import socket
import time
from decimal import Decimal
from pathlib import Path

import pytest

from matching_engine.core import Instrument, MatchingEngine
from matching_engine.db import create_engine
from matching_engine.journal import Journal
from matching_engine.migrate import upgrade_async
from matching_engine.service import EngineService
from matching_engine.snapshotter import ForkedSnapshot, SnapshotFailed
from tests.core.helpers import engine_with, limit
from tests.service.factories import settings_for


def _busy_engine() -> MatchingEngine:
    engine = engine_with()
    for index in range(200):
        side = "buy" if index % 2 else "sell"
        engine.submit(limit(f"acct-{index % 7}", side, 1 + index % 5, 10_000 + index % 9 - 4))
    return engine


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _slow_snapshots(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every snapshot waits ``seconds`` before it pickles (in the child, which runs it)."""
    snapshot = MatchingEngine.snapshot

    def slow_snapshot(engine: MatchingEngine) -> bytes:
        time.sleep(seconds)
        return snapshot(engine)

    monkeypatch.setattr(MatchingEngine, "snapshot", slow_snapshot)


def test_the_child_pickles_the_engine_as_it_was_at_the_fork() -> None:
    engine = _busy_engine()
    at_fork = engine.fingerprint()

    child = ForkedSnapshot(engine)
    for index in range(50):  # the server goes on meanwhile
        engine.submit(limit("later", "buy", 1, 9_000 + index))
    state = child.collect(timeout_s=30)

    assert MatchingEngine.restore(state).fingerprint() == at_fork != engine.fingerprint()
    _assert_reaped(child.pid)


def test_a_child_that_fails_is_reaped_and_reported(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _busy_engine()
    # On the class: a compiled engine has no instance attributes to shadow its methods with.
    monkeypatch.setattr(MatchingEngine, "snapshot", lambda self: 1 / 0)

    child = ForkedSnapshot(engine)

    with pytest.raises(SnapshotFailed, match="failed"):
        child.collect(timeout_s=30)
    _assert_reaped(child.pid)
    assert "ZeroDivisionError" in capfd.readouterr().err  # why, on the server's stderr


def test_a_child_past_its_deadline_is_killed_and_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _busy_engine()
    _slow_snapshots(monkeypatch, 60)

    child = ForkedSnapshot(engine)
    started = time.monotonic()
    with pytest.raises(SnapshotFailed, match="longer than"):
        child.collect(timeout_s=0.5)

    assert time.monotonic() - started < 5
    _assert_reaped(child.pid)


def test_the_child_yields_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _busy_engine()
    _slow_snapshots(monkeypatch, 1)
    child = ForkedSnapshot(engine)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the child lowers itself first thing; give it a moment
        oom_score_adj = int(Path(f"/proc/{child.pid}/oom_score_adj").read_text())
        nice = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        if oom_score_adj == 1000:
            break
        time.sleep(0.02)
    child.collect(timeout_s=30)

    assert oom_score_adj == 1000  # the first the out-of-memory killer picks
    assert nice == os.nice(0) + 10


def test_the_child_keeps_none_of_the_servers_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _busy_engine()
    _slow_snapshots(monkeypatch, 1)
    with socket.create_server(("127.0.0.1", 0)) as listening:
        child = ForkedSnapshot(engine)
        deadline = time.monotonic() + 5
        while True:  # the child closes them first thing; give it a moment
            open_in_child = {int(name) for name in os.listdir(f"/proc/{child.pid}/fd")}
            if len(open_in_child) <= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        child.collect(timeout_s=30)

    assert listening.fileno() not in open_in_child
    assert open_in_child - {0, 1, 2} == {max(open_in_child)}  # the pipe's write end only


@pytest.mark.asyncio
async def test_orders_are_acknowledged_while_a_snapshot_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}", tmp_path, snapshot_every_commands=2
    )
    await upgrade_async(settings)
    service = await EngineService.open(settings)
    _slow_snapshots(monkeypatch, 3)
    try:
        await service.add_instrument(
            Instrument("SN-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("100")),
            actor="test",
        )
        started = time.monotonic()
        for price in range(10, 20):
            await service.place_order(
                "trader", symbol="SN-USD", side="buy", type="limit", quantity=Decimal(1),
                price=Decimal(price), time_in_force=None, post_only=False, stp="none",
                client_order_id=None,
            )  # fmt: skip
        placing_took = time.monotonic() - started
    finally:
        await service.close()  # waits for the snapshot in flight

    assert placing_took < 2.5  # the child sleeps 3 s before it pickles
    database = create_engine(settings)
    try:
        stored = await Journal(database).latest_snapshot(at_most=service.sequence)
    finally:
        await database.dispose()
    assert stored is not None
    sequence, state = stored
    assert sequence >= 2
    assert MatchingEngine.restore(state).sequence == sequence
