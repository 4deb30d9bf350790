import asyncio
import json
from pathlib import Path

import pytest

from matching_engine import __version__
from matching_engine.accounts import AccountStore, Principal, Role
from matching_engine.cli import main
from matching_engine.db import create_engine
from matching_engine.migrate import current
from matching_engine.settings import Settings


def test_help_prints_usage_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    assert "usage: matching-engine" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"matching-engine {__version__}"


def test_no_command_prints_help_and_returns_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: matching-engine" in capsys.readouterr().out


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The embedded default, in a temporary data directory, whatever the environment says."""
    for name in ("ME_DATABASE_URL", "ME_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ME_DATA_DIR", str(tmp_path))
    return Settings()


def test_migrate_upgrades_to_head_and_prints_the_revision(
    embedded: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0

    assert capsys.readouterr().out.strip() == current(embedded)
    assert current(embedded) is not None


def test_accounts_create_prints_one_json_line_with_a_working_key(
    embedded: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "first admin", "--role", "admin"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    created = json.loads(lines[0])
    assert set(created) == {"account_id", "api_key"}
    principal = asyncio.run(_authenticate(embedded, created["api_key"]))
    assert principal == Principal(created["account_id"], "first admin", Role.ADMIN)


def test_accounts_create_refuses_an_empty_name(
    embedded: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "create", "", "--role", "trader"]) == 2

    output = capsys.readouterr()
    assert output.out == ""
    assert "1 to 200 characters" in output.err


def test_accounts_create_requires_a_known_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["accounts", "create", "desk", "--role", "root"])

    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


async def _authenticate(settings: Settings, api_key: str) -> Principal | None:
    engine = create_engine(settings)
    try:
        return await AccountStore(engine, settings).authenticate(api_key)
    finally:
        await engine.dispose()
