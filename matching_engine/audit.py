"""The audit trail of admin actions: durable on local disk first, then in the database.

SREs change modes precisely when things are broken, the database included. So an admin action is
written to a local append-only file and fsynced before it takes effect, and copied into the
``admin_audit`` table as soon as the database answers (at once when it is up; when it returns
otherwise). Entries carry their own id, so copying one twice is harmless. At start-up every entry
of the local file that the table lacks is copied over, so a mode set during an outage survives
a restart that happens before the database came back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from matching_engine.breaker import Breaker
from matching_engine.schema import admin_audit

__all__ = ["AuditEntry", "AuditLog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: str
    at: int  # ns since the epoch
    actor: str
    action: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str
    request_id: str | None

    @classmethod
    def new(
        cls,
        *,
        actor: str,
        action: str,
        target: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        reason: str,
        request_id: str | None = None,
    ) -> AuditEntry:
        return cls(
            uuid.uuid4().hex,
            time.time_ns(),
            actor,
            action,
            target,
            before,
            after,
            reason,
            request_id,
        )

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row["before"] = None if self.before is None else json.dumps(self.before, sort_keys=True)
        row["after"] = None if self.after is None else json.dumps(self.after, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        values = dict(row)
        for name in ("before", "after"):
            values[name] = None if values[name] is None else json.loads(values[name])
        return cls(**values)


def _order(entry: AuditEntry) -> tuple[int, str]:
    return entry.at, entry.audit_id


class AuditLog:
    def __init__(self, path: Path, database: AsyncEngine, breaker: Breaker) -> None:
        self._path = path
        self._database = database
        self._breaker = breaker
        self._insert = (postgresql if database.dialect.name == "postgresql" else sqlite).insert
        self._unwritten: dict[str, AuditEntry] = {}  # on disk, not yet in the table
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._newest_at = 0

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    async def load(self) -> list[AuditEntry]:
        """Copy the local entries the table lacks into it; answer the whole trail, oldest first."""
        local = await asyncio.to_thread(self._read_local)
        async with self._database.connect() as connection:
            stored = {
                row.audit_id: AuditEntry.from_row(row._mapping)
                for row in await connection.execute(select(admin_audit))
            }
        self._unwritten = {e.audit_id: e for e in local if e.audit_id not in stored}
        await self.flush()
        merged = {**stored, **{entry.audit_id: entry for entry in local}}
        trail = sorted(merged.values(), key=_order)
        if trail:
            self._newest_at = trail[-1].at
        return trail

    async def record(self, entry: AuditEntry) -> AuditEntry:
        """Make the entry durable on local disk; copy it into the table in the background.

        Never waits on the database: an SRE flipping a mode during an outage gets an answer as
        soon as the entry is on disk. The trail is ordered by time, and a later entry must come
        later even if the wall clock stepped back meanwhile (an NTP step, a VM migration), so
        an entry's time is at least one nanosecond past the newest one known. Answers the entry
        as recorded.
        """
        entry = replace(entry, at=max(entry.at, self._newest_at + 1))
        self._newest_at = entry.at
        await asyncio.to_thread(self._append_local, entry)
        self._unwritten[entry.audit_id] = entry
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self.flush_quietly())
        return entry

    async def flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as error:  # the database is down: the entries wait on disk
            log.warning("%d audit entries kept on disk for now: %s", len(self._unwritten), error)

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher

    async def flush(self) -> None:
        """Copy the entries written only on disk into the table (through the breaker)."""
        async with self._lock:
            # Until none is left: an entry recorded while a copy is under way has no flush of
            # its own (record() starts one only when none runs).
            while self._unwritten:
                entries = list(self._unwritten.values())
                async with self._breaker.guard(), self._database.begin() as connection:
                    await connection.execute(
                        self._insert(admin_audit).on_conflict_do_nothing(),
                        [entry.row() for entry in entries],
                    )
                for entry in entries:
                    self._unwritten.pop(entry.audit_id, None)

    async def newest(self, limit: int) -> list[AuditEntry]:
        """The newest entries first: the table's and the local file's, so that the trail can
        be read while the database is down (then from the local file alone)."""
        stored: list[AuditEntry] = []
        try:
            async with self._breaker.guard(), self._database.connect() as connection:
                rows = await connection.execute(
                    select(admin_audit).order_by(admin_audit.c.at.desc()).limit(limit)
                )
                stored = [AuditEntry.from_row(row._mapping) for row in rows]
        except Exception as error:
            log.warning("audit trail read from the local file only: %s", error)
        local = await asyncio.to_thread(self._read_local)
        merged = {e.audit_id: e for e in [*stored, *local]}
        return sorted(merged.values(), key=_order, reverse=True)[:limit]

    # -- the local file -----------------------------------------------------------------------

    def _append_local(self, entry: AuditEntry) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        created = not self._path.exists()
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        with self._path.open("a+b") as file:
            file.seek(0, os.SEEK_END)
            if file.tell():
                file.seek(-1, os.SEEK_END)
                if file.read(1) != b"\n":  # a line torn by a crash: never acknowledged
                    file.write(b"\n")  # keep it on a line of its own, which reads skip
            file.write(line.encode())
            file.flush()
            os.fsync(file.fileno())
        if created:  # the new name itself must survive a power loss too
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _read_local(self) -> list[AuditEntry]:
        if not self._path.exists():
            return []
        entries = []
        with self._path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                try:
                    entries.append(AuditEntry(**json.loads(line)))
                except (ValueError, TypeError):  # a line torn by a crash: never acknowledged
                    log.warning("skipping an unreadable line of %s", self._path)
        return entries
