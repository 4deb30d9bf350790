"""Small builders for service tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matching_engine.settings import Settings


def settings_for(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on the database at ``url``, with ``tmp_path`` as the data directory.

    Explicit values win over any ``ME_`` variable in the environment.
    """
    return Settings(database_url=url, data_dir=tmp_path, **overrides)
