"""The database schema, as SQLAlchemy Core tables. Alembic migrations are the only way it changes.

Two kinds of tables:

- the **source of truth**: ``journal`` (every sequenced command, written before it is applied and
  acknowledged), ``snapshots`` (the engine's state at a sequence, so recovery replays only the
  journal after it), ``accounts`` and ``server_secrets``;
- the **audit trail** (``admin_audit``): every admin action, append-only (a trigger refuses
  updates and deletes);
- **read models** (``orders``, ``fills``, ``trades``) that serve the queries memory does not.
  They are projections of the journal and can always be rebuilt by replaying it;
  ``projection_state`` says up to which sequence they are complete.

Prices and quantities in read models are decimal strings, exactly as the API shows them, so both
PostgreSQL and SQLite store them without loss. Times are integer nanoseconds since the epoch, the
same clock values the commands carry.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "accounts",
    "admin_audit",
    "fills",
    "journal",
    "metadata",
    "orders",
    "projection_state",
    "server_secrets",
    "snapshots",
    "trades",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

journal = Table(
    "journal",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("command", Text, nullable=False),  # JSON, see matching_engine.codec
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("taken_at", BigInteger, nullable=False),
    Column("format", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),
)

projection_state = Table(
    "projection_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("sequence", BigInteger, nullable=False),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),  # hex HMAC-SHA-256 of the key's secret part
    Column("created_at", BigInteger, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", String(40), nullable=False),
    Column("client_order_id", String(64)),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("type", String(8), nullable=False),
    Column("price", String(48)),
    Column("quantity", String(48), nullable=False),
    Column("filled_quantity", String(48), nullable=False),
    Column("remaining_quantity", String(48), nullable=False),
    Column("canceled_quantity", String(48), nullable=False),
    Column("average_price", String(48)),
    Column("status", String(20), nullable=False),
    Column("reason", String(32)),
    Column("time_in_force", String(8), nullable=False),
    Column("post_only", Boolean, nullable=False),
    Column("stp", String(16), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "account_id", "order_id"),
    Index(None, "account_id", "client_order_id"),
)

fills = Table(
    "fills",
    metadata,
    Column("trade_id", BigInteger, primary_key=True, autoincrement=False),
    Column("order_id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", String(40), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("price", String(48), nullable=False),
    Column("quantity", String(48), nullable=False),
    Column("liquidity", String(8), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index(None, "account_id", "trade_id"),
    Index(None, "order_id"),
)

trades = Table(
    "trades",
    metadata,
    Column("trade_id", BigInteger, primary_key=True, autoincrement=False),
    Column("symbol", String(32), nullable=False),
    Column("price", String(48), nullable=False),
    Column("quantity", String(48), nullable=False),
    Column("taker_side", String(8), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index(None, "symbol", "trade_id"),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("audit_id", String(32), primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(64)),
    Column("before", Text),  # JSON
    Column("after", Text),  # JSON
    Column("reason", Text, nullable=False),
    Column("request_id", String(128)),
    Index(None, "at"),
)
