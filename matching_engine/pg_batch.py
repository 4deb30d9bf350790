"""A batch's whole write on PostgreSQL as one statement: one round trip, one implicit transaction.

The journal rows, the read-model rows and the projection's progress go in together, each table's
rows as one JSON array of objects named like its columns, in a data-modifying ``WITH`` clause::

    WITH journal_rows AS (INSERT INTO journal (...)
                          SELECT ... FROM json_populate_recordset(NULL::journal, $1::json)),
         orders_rows AS (INSERT INTO orders (...) SELECT ... ON CONFLICT ... DO UPDATE ...),
         ...
    INSERT INTO projection_state (id, sequence) VALUES (1, $5) ON CONFLICT (id) DO UPDATE ...

A single statement outside ``BEGIN`` is its own transaction: all of it commits, or none. The
sequencer waits on every round trip of a batch while the event loop serves requests, so the
batch's commit latency is its round trips times a turn of a busy loop; the transaction of
separate statements took seven. One JSON text per table, rather than an array per column, because
encoding arrays costs asyncpg an ABC ``isinstance`` per element. The SQL is built once, from the
table definitions, so it cannot drift from the schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from matching_engine.schema import projection_state

__all__ = ["BatchStatement"]

_quote = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]


class BatchStatement:
    """Insert the rows of ``append`` (a row already there fails the whole statement: the
    journal), upsert those of ``upsert`` on its ``keys``, leaving its ``keep`` columns alone,
    and insert those of ``insert_new`` unless they exist; then set the projection's progress."""

    def __init__(
        self,
        *,
        append: Table,
        upsert: tuple[Table, Sequence[str], Sequence[str]],
        insert_new: Sequence[Table],
    ) -> None:
        upserted, keys, keep = upsert
        conflicts = {
            append: "",
            upserted: f" ON CONFLICT ({', '.join(map(_quote, keys))}) DO UPDATE SET "
            + ", ".join(
                f"{_quote(column.name)} = EXCLUDED.{_quote(column.name)}"
                for column in upserted.columns
                if column.name not in (*keys, *keep)
            ),
            **dict.fromkeys(insert_new, " ON CONFLICT DO NOTHING"),
        }
        self.tables = tuple(conflicts)
        parts = []
        for parameter, (table, on_conflict) in enumerate(conflicts.items(), start=1):
            name = _quote(table.name)
            columns = ", ".join(_quote(column.name) for column in table.columns)
            parts.append(
                f"{_quote(table.name + '_rows')} AS (INSERT INTO {name} ({columns}) "
                f"SELECT {columns} FROM json_populate_recordset(NULL::{name}, ${parameter}::json)"
                f"{on_conflict})"
            )
        parameter = len(conflicts) + 1
        progress = _quote(projection_state.name)
        self.sql = (
            f"WITH {', '.join(parts)} "
            f"INSERT INTO {progress} (id, sequence) VALUES (1, ${parameter}) "
            "ON CONFLICT (id) DO UPDATE SET sequence = EXCLUDED.sequence"
        )

    def arguments(
        self, rows: Mapping[Table, Sequence[Mapping[str, Any]]], projected: int
    ) -> list[Any]:
        """The statement's parameters: each table's rows as JSON, then the progress."""
        # orjson: the standard library's encoder takes several microseconds a row.
        encoded = (orjson.dumps(rows.get(table, ())).decode() for table in self.tables)
        return [*encoded, projected]
