"""A small keep-alive HTTP/1.1 load client on asyncio streams, for loopback benchmarks.

httpx spends more CPU per request than the server under test does, which would make the client
the bottleneck; this one sends prebuilt request bytes and parses only the status line and the
``Content-Length`` of the answer. Every loop is bounded by a request count and a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def request_bytes(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    port: int,
    make_request: Callable[[int], bytes],
    deadline: float,
    budget: list[int],
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(make_request(budget[0]))
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            status = int(status_line.split()[1])
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(time.perf_counter() - started)
    except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
        result.errors += 1
    finally:
        writer.close()


async def run_load(
    port: int,
    make_request: Callable[[int], bytes],
    *,
    connections: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    """Closed-loop load: ``connections`` clients, each sending its next request on an answer."""
    result = LoadResult()
    budget = [max_requests]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, make_request, started + seconds, budget, result)
            for _ in range(connections)
        )
    )
    result.seconds = time.perf_counter() - started
    return result
