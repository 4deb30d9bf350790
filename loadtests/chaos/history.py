"""The client's history: every request the load sent and how it ended, Jepsen style.

An operation ends in one of five ways:

``ok``           a 2xx: the command happened, and its answer (the body) is what the engine promised;
``fail``         a definite 4xx: it did not happen;
``unavailable``  a 503: refused (``read_only``, ``overloaded``, ...: definitely not done) or, for
                 ``unavailable`` itself, in doubt (a commit that timed out may have happened);
``error``        any other status, a 5xx above all: a bug;
``info``         no answer (refused connection, reset, the client's deadline): in doubt.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["NOT_SENT", "REFUSED_CODES", "History", "Op", "Outcome", "outcome_of", "percentile_ms"]

Outcome = Literal["ok", "fail", "unavailable", "error", "info"]

# 503 codes given before a command reaches the journal: such a command never happened.
REFUSED_CODES = frozenset({"read_only", "cancel_only", "post_only_mode", "halted", "overloaded"})
# The error of an operation whose connection was refused: it was never sent.
NOT_SENT = "ConnectionRefusedError"


def outcome_of(status: int | None) -> Outcome:
    if status is None:
        return "info"
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "fail"
    if status == 503:
        return "unavailable"
    return "error"


@dataclass(slots=True)
class Op:
    """One request: what was asked (``request``), when, and how it ended."""

    kind: Literal["order", "cancel", "probe"]
    actor: str  # the trader's name
    request: dict[str, Any]  # the order's body; {"order_id": ...} for a cancel
    started: float  # seconds on the experiment's clock
    finished: float = math.nan
    status: int | None = None
    code: str | None = None
    body: dict[str, Any] | None = None  # the answer of a 2xx
    error: str | None = None  # why there was no answer

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.status)

    @property
    def done(self) -> bool:
        return not math.isnan(self.finished)

    @property
    def latency_s(self) -> float:
        return self.finished - self.started

    @property
    def client_order_id(self) -> str | None:
        value = self.request.get("client_order_id")
        return None if value is None else str(value)

    @property
    def definitely_not_done(self) -> bool:
        """A definite refusal: a 4xx, a 503 given before the journal, or a connection refused
        (the request never left the client)."""
        return (
            self.outcome == "fail"
            or (self.outcome == "unavailable" and self.code in REFUSED_CODES)
            or (self.outcome == "info" and self.error == NOT_SENT)
        )

    @property
    def in_doubt(self) -> bool:
        return self.done and not self.definitely_not_done and self.outcome != "ok"


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def of(self, *kinds: str, actor: str | None = None) -> list[Op]:
        return [op for op in self.ops if op.kind in kinds and (actor is None or op.actor == actor)]

    def between(self, start: float, end: float, *kinds: str) -> list[Op]:
        return [op for op in self.of(*kinds) if start <= op.started < end]

    def write(self, path: Path) -> None:
        """One JSON line per operation, flushed to disk before returning."""
        with path.open("w") as file:
            for op in self.ops:
                record = asdict(op)
                record["outcome"] = op.outcome
                file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())


def percentile_ms(latencies_s: Iterable[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (nearest rank) in milliseconds; None without data."""
    ordered = sorted(latencies_s)
    if not ordered:
        return None
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank] * 1000
