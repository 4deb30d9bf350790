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
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto headers name the client
    # (comma-separated addresses, "*" for any). Unset, the client is the socket's peer, so a
    # forged header cannot move a request out from under its address's rate limits.
    forwarded_allow_ips: str | None = None

    # The sequencer and its group commit.
    batch_max_commands: int = Field(default=1_000, ge=1)
    # Load shedding: commands waiting for the sequencer beyond this are refused (503 overloaded).
    queue_max_commands: int = Field(default=256, ge=1)
    # HTTP requests in progress beyond this are refused at once (503 overloaded).
    max_requests_in_flight: int = Field(default=128, ge=1)
    # No write waits longer than this, from its arrival, for its answer: 503 overloaded when it
    # passed before the write was queued, 503 unavailable when it passes while journaling.
    request_deadline_s: float = Field(default=10.0, gt=0)
    snapshot_every_commands: int = Field(default=100_000, ge=1)
    # A forked child pickles the engine (about 6 s per million resting orders); past this it is
    # killed and the snapshot skipped.
    snapshot_timeout_s: float = Field(default=300.0, gt=0)
    closed_order_capacity: int = Field(default=10_000, ge=1)

    # Database deadlines and pool.
    # At least three: the journal writer and the projector each hold one, reads share the rest.
    db_pool_size: int = Field(default=5, ge=3)
    db_pool_timeout_s: float = Field(default=2.0, gt=0)
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_statement_timeout_s: float = Field(default=5.0, gt=0)
    db_commit_timeout_s: float = Field(default=5.0, gt=0)

    # Rate limits and Redis.
    # Limits are a steady rate per second plus a burst on top (GCRA: burst + 1 requests at once).
    # Writes and reads are limited per account, public endpoints and failed authentication per
    # client address. While the engine is degraded the limits are multiplied by
    # ``rate_limit_degraded_factor``; while Redis is failing the in-process fallback enforces them
    # multiplied by ``rate_limit_fallback_factor``, never unlimited and never refusing everything.
    rate_limit_orders_per_s: float = Field(default=200, gt=0)
    rate_limit_orders_burst: int = Field(default=400, ge=0)
    rate_limit_reads_per_s: float = Field(default=200, gt=0)
    rate_limit_reads_burst: int = Field(default=400, ge=0)
    rate_limit_public_per_s: float = Field(default=100, gt=0)
    rate_limit_public_burst: int = Field(default=200, ge=0)
    rate_limit_auth_failures_per_s: float = Field(default=1.0, gt=0)
    rate_limit_auth_failures_burst: int = Field(default=10, ge=0)
    rate_limit_degraded_factor: float = Field(default=0.5, gt=0, le=1)
    rate_limit_fallback_factor: float = Field(default=0.5, gt=0, le=1)
    redis_socket_timeout_s: float = Field(default=0.1, gt=0)
    redis_breaker_fail_max: int = Field(default=3, ge=1)
    redis_breaker_reset_s: float = Field(default=5.0, gt=0)
    # The database breaker: when it opens the engine turns read-only by itself.
    db_breaker_fail_max: int = Field(default=3, ge=1)
    db_breaker_reset_s: float = Field(default=5.0, gt=0)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "info"
    # One JSON object per line (see matching_engine.logs); false gives plain text for humans.
    log_json: bool = True

    # Traces (see matching_engine.tracing), off by default. The endpoint is the collector's full
    # OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; unset, the exporter's default
    # and the standard OTEL_EXPORTER_OTLP_* variables apply.
    tracing_enabled: bool = False
    tracing_otlp_endpoint: str | None = None
    tracing_service_name: str = "matching-engine"

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
    def audit_path(self) -> Path:
        """The local, fsynced copy of the admin audit trail (see matching_engine.audit)."""
        return self.data_dir / "admin-audit.jsonl"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
