"""The repository: every SQL statement of the write path and of the read models lives here.

The journal is append-only: one row per sequenced command, written in one transaction per batch
(group commit) before any command of the batch is applied. The read-model rows are written by
transactions of their own, after the commands that produced them were applied, on PostgreSQL over
a second connection, so that the journal's commits, which requests wait for, carry nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from matching_engine import codec
from matching_engine.core import Command
from matching_engine.pg_batch import BatchStatement
from matching_engine.projection import Projection
from matching_engine.schema import fills, journal, orders, projection_state, snapshots, trades
from matching_engine.views import FillView, OrderView, TradeView

__all__ = ["Journal"]

# The engine's pickled layout; a snapshot of another layout is skipped (recovery replays instead).
# 3: every core class spells out its state, the same for the pure and the compiled core.
# 4: events (recent trades) are compiled classes pickled by their fields, no longer named tuples.
# 5: new orders are a compiled class, rebuilt through their constructor.
# 6: book sides keep their price keys in SortedKeys (no sortedcontainers); orders carry a key.
SNAPSHOT_FORMAT = 6
_REPLAY_PAGE = 5_000
_SNAPSHOTS_KEPT = 2


class Journal:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        is_postgresql = engine.dialect.name == "postgresql"
        dialect = postgresql if is_postgresql else sqlite
        kept = ("order_id", "account_id", "created_at")  # what an order's later rows never change
        # PostgreSQL: each write in one statement (see matching_engine.pg_batch), on a connection
        # of its own: the journal's and the read models' go on side by side.
        self._journal_statement: BatchStatement | None = None
        self._projection_statement: BatchStatement | None = None
        if is_postgresql:
            self._journal_statement = BatchStatement(append=[journal])
            self._projection_statement = BatchStatement(
                upsert=[(orders, ["order_id"], kept)],
                # Fills and trades never change: a row written by an earlier attempt is kept.
                insert_new=[fills, trades],
                progress=True,
            )
        self._journal_writer = _HeldConnection(engine)
        # Read models can be rebuilt from the journal: their commits need not wait for the disk.
        # A crash loses the last ones and their progress marker together, and recovery writes
        # them again.
        self._projection_writer = _HeldConnection(engine, "SET synchronous_commit = off")
        # SQLite: one writer at a time (the file has one write lock), and transactions of
        # statements built once: composing these per batch costs more than executing them.
        self._sqlite_write = asyncio.Lock()
        upsert = dialect.insert(orders)
        self._upsert_orders = upsert.on_conflict_do_update(
            index_elements=["order_id"],
            set_={
                column.name: upsert.excluded[column.name]
                for column in orders.columns
                if column.name not in kept
            },
        )
        self._insert_fills = dialect.insert(fills).on_conflict_do_nothing()
        self._insert_trades = dialect.insert(trades).on_conflict_do_nothing()
        progress = dialect.insert(projection_state)
        self._set_progress = progress.on_conflict_do_update(
            index_elements=["id"], set_={"sequence": progress.excluded.sequence}
        )

    # -- write path ---------------------------------------------------------------------------

    async def append(self, entries: Sequence[tuple[int, Command]]) -> None:
        """Journal a batch of sequenced commands, in one transaction. A sequence that is already
        there fails the whole batch."""
        rows = [
            {"sequence": sequence, "kind": codec.kind(command), "command": codec.encode(command)}
            for sequence, command in entries
        ]
        if self._journal_statement is not None:
            await self._journal_writer.execute(
                self._journal_statement.sql, *self._journal_statement.arguments({journal: rows})
            )
            return
        async with self._sqlite_write, self._engine.begin() as connection:
            await connection.execute(journal.insert(), rows)

    async def write_projection(self, projection: Projection) -> None:
        """Write read-model rows and how far they reach, in one transaction. Writing the same
        rows again is harmless: orders are upserted, fills and trades kept when present."""
        rows = {
            orders: [view.row() for view in projection.orders.values()],
            fills: [_fill_row(fill) for fill in projection.fills],
            trades: [_trade_row(trade) for trade in projection.trades],
        }
        if self._projection_statement is not None:
            arguments = self._projection_statement.arguments(rows, projection.sequence)
            await self._projection_writer.execute(self._projection_statement.sql, *arguments)
            return
        async with self._sqlite_write, self._engine.begin() as connection:
            if rows[orders]:
                await connection.execute(self._upsert_orders, rows[orders])
            if rows[fills]:
                await connection.execute(self._insert_fills, rows[fills])
            if rows[trades]:
                await connection.execute(self._insert_trades, rows[trades])
            await connection.execute(self._set_progress, {"id": 1, "sequence": projection.sequence})

    async def close(self) -> None:
        await self._journal_writer.close()
        await self._projection_writer.close()

    async def last_timestamp(self) -> int:
        """The timestamp of the newest journaled command (0 for an empty journal)."""
        async with self._engine.connect() as connection:
            text = await connection.scalar(
                select(journal.c.command).order_by(journal.c.sequence.desc()).limit(1)
            )
        return 0 if text is None else codec.decode(text).timestamp

    async def last_sequence(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(select(func.max(journal.c.sequence)))
        return int(value or 0)

    # -- recovery -----------------------------------------------------------------------------

    async def projected_sequence(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(
                select(projection_state.c.sequence).where(projection_state.c.id == 1)
            )
        return int(value or 0)

    async def replay(self, after: int) -> AsyncIterator[tuple[int, Command]]:
        """Every journaled command after ``after``, in sequence order, read in pages."""
        while True:
            async with self._engine.connect() as connection:
                rows = (
                    await connection.execute(
                        select(journal.c.sequence, journal.c.command)
                        .where(journal.c.sequence > after)
                        .order_by(journal.c.sequence)
                        .limit(_REPLAY_PAGE)
                    )
                ).all()
            for sequence, text in rows:
                yield sequence, codec.decode(text)
            if len(rows) < _REPLAY_PAGE:
                return
            after = rows[-1][0]

    async def latest_snapshot(self, at_most: int) -> tuple[int, bytes] | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(snapshots.c.sequence, snapshots.c.state)
                    .where(snapshots.c.sequence <= at_most, snapshots.c.format == SNAPSHOT_FORMAT)
                    .order_by(snapshots.c.sequence.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def snapshot_taken_at(self) -> int | None:
        """When the newest stored snapshot was taken (ns since the epoch); None without one."""
        async with self._engine.connect() as connection:
            taken_at = await connection.scalar(
                select(snapshots.c.taken_at).order_by(snapshots.c.sequence.desc()).limit(1)
            )
        return None if taken_at is None else int(taken_at)

    async def save_snapshot(self, sequence: int, state: bytes) -> int:
        """Store a snapshot and drop all but the newest few; answer when it was taken (ns)."""
        taken_at = time.time_ns()
        async with self._engine.begin() as connection:
            await connection.execute(
                snapshots.insert().values(
                    sequence=sequence, taken_at=taken_at, format=SNAPSHOT_FORMAT, state=state
                )
            )
            # The minimum over a derived table: as a scalar subquery, the newest few would be
            # "more than one row" to PostgreSQL (SQLite silently takes the first).
            kept = (
                select(snapshots.c.sequence)
                .order_by(snapshots.c.sequence.desc())
                .limit(_SNAPSHOTS_KEPT)
                .subquery()
            )
            await connection.execute(
                delete(snapshots).where(
                    snapshots.c.sequence < select(func.min(kept.c.sequence)).scalar_subquery()
                )
            )
        return taken_at

    # -- read models --------------------------------------------------------------------------

    async def order(self, account_id: str, order_id: int) -> OrderView | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(orders).where(
                        orders.c.order_id == order_id, orders.c.account_id == account_id
                    )
                )
            ).first()
        return None if row is None else _order_view(row._mapping)

    async def orders(
        self,
        account_id: str,
        *,
        symbol: str | None,
        open_only: bool | None,
        client_order_id: str | None,
        limit: int,
    ) -> list[OrderView]:
        query = select(orders).where(orders.c.account_id == account_id)
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
        if client_order_id is not None:
            query = query.where(orders.c.client_order_id == client_order_id)
        if open_only is not None:
            statuses = ("new", "partially_filled")
            column = orders.c.status
            query = query.where(column.in_(statuses) if open_only else column.not_in(statuses))
        query = query.order_by(orders.c.order_id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_order_view(row._mapping) for row in rows]

    async def fills_of_order(self, order_id: int) -> list[FillView]:
        query = select(fills).where(fills.c.order_id == order_id).order_by(fills.c.trade_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_fill_view(row._mapping) for row in rows]

    async def fills(self, account_id: str, *, symbol: str | None, limit: int) -> list[FillView]:
        query = select(fills).where(fills.c.account_id == account_id)
        if symbol is not None:
            query = query.where(fills.c.symbol == symbol)
        query = query.order_by(fills.c.trade_id.desc(), fills.c.order_id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_fill_view(row._mapping) for row in rows]

    async def trades(self, symbol: str, limit: int) -> list[TradeView]:
        query = (
            select(trades)
            .where(trades.c.symbol == symbol)
            .order_by(trades.c.trade_id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_trade_view(row._mapping) for row in rows]


def _fill_row(fill: FillView) -> dict[str, Any]:
    return {
        "trade_id": int(fill.trade_id),
        "order_id": int(fill.order_id),
        "account_id": fill.account_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "price": str(fill.price),
        "quantity": str(fill.quantity),
        "liquidity": fill.liquidity,
        "sequence": fill.sequence,
        "timestamp": fill.timestamp,
    }


def _trade_row(trade: TradeView) -> dict[str, Any]:
    return {
        "trade_id": int(trade.trade_id),
        "symbol": trade.symbol,
        "price": str(trade.price),
        "quantity": str(trade.quantity),
        "taker_side": trade.taker_side,
        "sequence": trade.sequence,
        "timestamp": trade.timestamp,
    }


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _order_view(row: Any) -> OrderView:
    return OrderView(
        order_id=str(row["order_id"]),
        client_order_id=row["client_order_id"],
        account_id=row["account_id"],
        symbol=row["symbol"],
        side=row["side"],
        type=row["type"],
        price=_decimal(row["price"]),
        quantity=Decimal(row["quantity"]),
        filled_quantity=Decimal(row["filled_quantity"]),
        remaining_quantity=Decimal(row["remaining_quantity"]),
        canceled_quantity=Decimal(row["canceled_quantity"]),
        average_price=_decimal(row["average_price"]),
        status=row["status"],
        reason=row["reason"],
        time_in_force=row["time_in_force"],
        post_only=bool(row["post_only"]),
        stp=row["stp"],
        sequence=int(row["sequence"]),
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
    )


def _fill_view(row: Any) -> FillView:
    return FillView(
        trade_id=str(row["trade_id"]),
        order_id=str(row["order_id"]),
        account_id=row["account_id"],
        symbol=row["symbol"],
        side=row["side"],
        price=Decimal(row["price"]),
        quantity=Decimal(row["quantity"]),
        liquidity=row["liquidity"],
        sequence=int(row["sequence"]),
        timestamp=int(row["timestamp"]),
    )


def _trade_view(row: Any) -> TradeView:
    return TradeView(
        trade_id=str(row["trade_id"]),
        symbol=row["symbol"],
        price=Decimal(row["price"]),
        quantity=Decimal(row["quantity"]),
        taker_side=row["taker_side"],
        sequence=int(row["sequence"]),
        timestamp=int(row["timestamp"]),
    )


class _HeldConnection:
    """An asyncpg connection taken from the pool once and held for one writer's statements.

    asyncpg itself, because SQLAlchemy would wrap a statement in BEGIN and COMMIT, and held,
    because a checkout from SQLAlchemy's pool costs about as much Python as the write. Each
    writer (the sequencer, the projector) is one task, so a connection runs one statement at a
    time.
    """

    def __init__(self, engine: AsyncEngine, setup: str | None = None) -> None:
        self._engine = engine
        self._setup = setup  # run once on each new connection
        self._held: AsyncConnection | None = None
        self._connection: Any = None

    async def execute(self, sql: str, *arguments: Any) -> None:
        connection = await self._get()
        try:
            await connection.execute(sql, *arguments)
        except BaseException:
            # Failed, timed out or cancelled, the connection is in an unknown state (or dead
            # with the server): the next write connects afresh.
            await self.close()
            raise

    async def _get(self) -> Any:
        if self._connection is not None and self._connection.is_closed():
            # The server or the network closed it while it was idle (a restart, an outage).
            await self.close()
        if self._held is None:
            held = await self._engine.connect()
            try:
                connection: Any = (await held.get_raw_connection()).driver_connection
                if self._setup is not None:
                    await connection.execute(self._setup)
            except BaseException:
                await held.invalidate()
                await held.close()
                raise
            self._held, self._connection = held, connection
        return self._connection

    async def close(self) -> None:
        """Give back the held connection, discarded: it may be in any state."""
        held, self._held, self._connection = self._held, None, None
        if held is not None:
            await held.invalidate()
            await held.close()
