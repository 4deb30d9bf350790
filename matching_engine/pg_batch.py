"""A write of many rows to PostgreSQL as one statement: one round trip, one implicit transaction.

Each table's rows go as one JSON array of objects named like its columns, in a data-modifying
``WITH`` clause when there are several tables::

    WITH orders_rows AS (INSERT INTO orders (...)
                         SELECT ... FROM json_populate_recordset(NULL::orders, $1::json)
                         ON CONFLICT ... DO UPDATE ...),
         fills_rows AS (...)
    INSERT INTO projection_state (id, sequence) VALUES (1, $4) ON CONFLICT (id) DO UPDATE ...

A single statement outside ``BEGIN`` is its own transaction: all of it commits, or none. Its
writer waits on every round trip while the event loop serves requests, so a write's latency is
its round trips times a turn of a busy loop; a transaction of separate statements took up to
seven. One JSON text per table, rather than an array per column, because encoding arrays costs
asyncpg an ABC ``isinstance`` per element. The SQL is built once, from the table definitions, so
it cannot drift from the schema.
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
    insert those of ``insert_new`` unless they exist, and, with ``progress``, set how far the
    read models reach."""

    def __init__(
        self,
        *,
        append: Sequence[Table] = (),
        upsert: Sequence[tuple[Table, Sequence[str], Sequence[str]]] = (),
        insert_new: Sequence[Table] = (),
        progress: bool = False,
    ) -> None:
        conflicts = dict.fromkeys(append, "")
        for table, keys, keep in upsert:
            conflicts[table] = f" ON CONFLICT ({', '.join(map(_quote, keys))}) DO UPDATE SET " + (
                ", ".join(
                    f"{_quote(column.name)} = EXCLUDED.{_quote(column.name)}"
                    for column in table.columns
                    if column.name not in (*keys, *keep)
                )
            )
        conflicts.update(dict.fromkeys(insert_new, " ON CONFLICT DO NOTHING"))
        self.tables = tuple(conflicts)
        self._progress = progress
        inserts = []
        for parameter, (table, on_conflict) in enumerate(conflicts.items(), start=1):
            name = _quote(table.name)
            columns = ", ".join(_quote(column.name) for column in table.columns)
            inserts.append(
                f"INSERT INTO {name} ({columns}) SELECT {columns} "
                f"FROM json_populate_recordset(NULL::{name}, ${parameter}::json){on_conflict}"
            )
        if progress:
            inserts.append(
                f"INSERT INTO {_quote(projection_state.name)} (id, sequence) "
                f"VALUES (1, ${len(conflicts) + 1}) "
                "ON CONFLICT (id) DO UPDATE SET sequence = EXCLUDED.sequence"
            )
        # All but the last as WITH clauses; the last is the statement's own.
        clauses = [
            f"{_quote(f'rows_{index}')} AS ({insert})" for index, insert in enumerate(inserts[:-1])
        ]
        self.sql = f"WITH {', '.join(clauses)} {inserts[-1]}" if clauses else inserts[-1]

    def arguments(
        self, rows: Mapping[Table, Sequence[Mapping[str, Any]]], projected: int | None = None
    ) -> list[Any]:
        """The statement's parameters: each table's rows as JSON, then the progress."""
        # orjson: the standard library's encoder takes several microseconds a row.
        encoded: list[Any] = [orjson.dumps(rows.get(table, ())).decode() for table in self.tables]
        if self._progress:
            encoded.append(projected)
        return encoded
