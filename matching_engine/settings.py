"""Settings, read from ``ME_`` environment variables by pydantic-settings.

Nothing is mandatory. With nothing set the engine runs on its embedded default: a SQLite journal
in ``ME_DATA_DIR`` and an in-process rate limiter. ``ME_DATABASE_URL``
(``postgresql+asyncpg://...``) and ``ME_REDIS_URL`` switch to the production parts. The key-hashing
secret, when not set, is generated on first use and kept in the database with the data it
protects, so that every command (``serve``, ``migrate``, ``accounts create``, ``replay``) agrees on it.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ME_", extra="ignore", frozen=True)

    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://... or sqlite+aiosqlite:///...; "
        "default: a SQLite file in data_dir",
    )
    redis_url: str | None = None
    key_secret: SecretStr | None = Field(
        default=None, description="HMAC key for API key hashes; generated and stored if unset"
    )

    host: str = "127.0.0.1"
    port: int = 8000

    # The sequencer and its group commit.
    batch_max_commands: int = Field(default=1_000, ge=1)
    snapshot_every_commands: int = Field(default=100_000, ge=1)
    closed_order_capacity: int = Field(default=100_000, ge=1)

    # Database deadlines and pool.
    db_pool_size: int = Field(default=5, ge=1)
    db_pool_timeout_s: float = Field(default=2.0, gt=0)
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_statement_timeout_s: float = Field(default=5.0, gt=0)
    db_commit_timeout_s: float = Field(default=5.0, gt=0)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _supported_driver(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("database_url must use postgresql+asyncpg:// or sqlite+aiosqlite://")
        return url

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'engine.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
