"""The initial schema: the journal, snapshots, accounts and server secrets, and the read models.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 20:43:19.198132
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_journal")),
    )
    op.create_table(
        "snapshots",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("taken_at", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_snapshots")),
    )
    op.create_table(
        "projection_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projection_state")),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("key_id", name=op.f("uq_accounts_key_id")),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("price", sa.String(length=48), nullable=True),
        sa.Column("quantity", sa.String(length=48), nullable=False),
        sa.Column("filled_quantity", sa.String(length=48), nullable=False),
        sa.Column("remaining_quantity", sa.String(length=48), nullable=False),
        sa.Column("canceled_quantity", sa.String(length=48), nullable=False),
        sa.Column("average_price", sa.String(length=48), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("post_only", sa.Boolean(), nullable=False),
        sa.Column("stp", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
    )
    op.create_index(
        op.f("ix_orders_account_id_order_id"), "orders", ["account_id", "order_id"], unique=False
    )
    op.create_index(
        op.f("ix_orders_account_id_client_order_id"),
        "orders",
        ["account_id", "client_order_id"],
        unique=False,
    )
    op.create_table(
        "fills",
        sa.Column("trade_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("price", sa.String(length=48), nullable=False),
        sa.Column("quantity", sa.String(length=48), nullable=False),
        sa.Column("liquidity", sa.String(length=8), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trade_id", "order_id", name=op.f("pk_fills")),
    )
    op.create_index(
        op.f("ix_fills_account_id_trade_id"), "fills", ["account_id", "trade_id"], unique=False
    )
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"], unique=False)
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("price", sa.String(length=48), nullable=False),
        sa.Column("quantity", sa.String(length=48), nullable=False),
        sa.Column("taker_side", sa.String(length=8), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_trades")),
    )
    op.create_index(
        op.f("ix_trades_symbol_trade_id"), "trades", ["symbol", "trade_id"], unique=False
    )


def downgrade() -> None:
    # A table's indexes go with it.
    for table in (
        "trades",
        "fills",
        "orders",
        "accounts",
        "server_secrets",
        "projection_state",
        "snapshots",
        "journal",
    ):
        op.drop_table(table)
