"""``matching-engine replay``: an offline rebuild agrees with the live engine and its snapshots."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from matching_engine.cli import main
from matching_engine.core import Instrument
from matching_engine.migrate import upgrade_async
from matching_engine.replay import replay_journal
from matching_engine.service import EngineService
from tests.service.factories import settings_for


async def _trade_a_little(service: EngineService) -> None:
    await service.add_instrument(
        Instrument("ABC-USD", Decimal("0.5"), Decimal("1"), Decimal("1"), Decimal("100")),
        actor="test",
    )
    for index in range(30):
        side = "buy" if index % 2 else "sell"
        price = Decimal(100) + (Decimal(index % 5) / 2) * (1 if side == "sell" else -1)
        await service.place_order(
            f"trader-{index % 3}",
            symbol="ABC-USD",
            side=side,
            type="limit",
            quantity=Decimal(1 + index % 4),
            price=price if index % 7 else price + (3 if side == "buy" else -3),
            time_in_force=None,
            post_only=False,
            stp="none",
            client_order_id=None,
        )


@pytest.mark.asyncio
async def test_replay_matches_the_live_engine_and_its_snapshot(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fresh_pg_url, tmp_path, snapshot_every_commands=10)
    await upgrade_async(settings)
    service = await EngineService.open(settings)
    try:
        await _trade_a_little(service)
        live = service.engine.fingerprint(), service.sequence, service.engine.trade_count
    finally:
        await service.close()

    summary = await replay_journal(settings)

    assert (summary["fingerprint"], summary["sequence"], summary["trades"]) == live
    assert summary["commands"] == {"add_instrument": 1, "new_order": 30}
    assert summary["snapshot"]["matches_replay"] is True


def test_replay_command_prints_a_json_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ME_DATA_DIR", str(tmp_path))
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}", tmp_path)

    async def prepare() -> None:
        await upgrade_async(settings)
        service = await EngineService.open(settings)
        try:
            await _trade_a_little(service)
        finally:
            await service.close()

    asyncio.run(prepare())
    assert main(["replay"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sequence"] == 31
    assert summary["instruments"] == ["ABC-USD"]
