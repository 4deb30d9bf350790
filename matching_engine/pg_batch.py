"""A batch's whole write on PostgreSQL as one statement: one round trip, one implicit transaction.

The journal rows, the read-model rows and the projection's progress go in together, each table's
rows as one array per column, unnested by a data-modifying ``WITH`` clause::

    WITH journal_rows AS (INSERT INTO journal (...) SELECT * FROM unnest($1::BIGINT[], ...)),
         orders_rows AS (INSERT INTO orders (...) SELECT * FROM unnest(...) ON CONFLICT ...),
         ...
    INSERT INTO projection_state (id, sequence) VALUES (1, $41) ON CONFLICT (id) DO UPDATE ...

A single statement outside ``BEGIN`` is its own transaction: all of it commits, or none. The
sequencer waits on every round trip of a batch while the event loop serves requests, so the
batch's commit latency is its round trips times a turn of a busy loop; the transaction of
separate statements took seven. The SQL is built once, from the table definitions, so it cannot
drift from the schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from matching_engine.schema import projection_state

__all__ = ["BatchStatement"]

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_quote = _DIALECT.identifier_preparer.quote


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
        self._columns = {table: [column.name for column in table.columns] for table in conflicts}
        parts, parameter = [], 1
        for table, on_conflict in conflicts.items():
            columns = list(table.columns)
            arrays = ", ".join(
                f"${parameter + index}::{column.type.compile(_DIALECT)}[]"
                for index, column in enumerate(columns)
            )
            parameter += len(columns)
            names = ", ".join(_quote(column.name) for column in columns)
            parts.append(
                f"{_quote(table.name + '_rows')} AS (INSERT INTO {_quote(table.name)} ({names}) "
                f"SELECT * FROM unnest({arrays}){on_conflict})"
            )
        progress = _quote(projection_state.name)
        self.sql = (
            f"WITH {', '.join(parts)} "
            f"INSERT INTO {progress} (id, sequence) VALUES (1, ${parameter}) "
            "ON CONFLICT (id) DO UPDATE SET sequence = EXCLUDED.sequence"
        )

    def arguments(
        self, rows: Mapping[Table, Sequence[Mapping[str, Any]]], projected: int
    ) -> list[Any]:
        """The statement's parameters: per table, one list per column; then the progress."""
        arguments: list[Any] = []
        for table in self.tables:
            names = self._columns[table]
            table_rows = rows.get(table, ())
            arguments += ([row[name] for row in table_rows] for name in names)
        arguments.append(projected)
        return arguments
