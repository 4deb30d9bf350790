"""A lean keep-alive HTTP/1.1 client on asyncio streams, for the chaos load.

The load must be cheap for the client (the client shares the machine with the engine, and the
overload experiment offers five times what the engine can take) and must tell apart every way a
request can end: an answer with its status and body, or no answer at all (refused, reset,
closed, or past the client's own deadline). httpx does the same in many more instructions.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "Connection", "NoAnswer"]

# uvicorn closes a keep-alive connection after 5 s of silence; a connection idle for longer than
# this is not reused, so that a request never meets a close it did not cause.
_MAX_IDLE_S = 2.0


class NoAnswer(Exception):
    """The request got no (complete) answer; the command may or may not have happened."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def code(self) -> str | None:
        """The problem ``code`` of an error answer."""
        if self.status < 400 or not self.body:
            return None
        try:
            problem = json.loads(self.body)
        except ValueError:
            return None
        return problem.get("code") if isinstance(problem, dict) else None


class Connection:
    """One keep-alive connection to ``127.0.0.1:port``, opened on first use and after errors."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float,
    ) -> Answer:
        """Send one request and read its answer; raise :class:`NoAnswer` when none came."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
        try:
            async with asyncio.timeout(timeout_s):
                if self._writer is None or time.monotonic() - self._last_used > _MAX_IDLE_S:
                    await self._open()
                assert self._reader is not None
                assert self._writer is not None
                self._writer.write(raw)
                await self._writer.drain()
                answer = await self._read(self._reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            self.close()
            raise NoAnswer(type(error).__name__) from error
        self._last_used = time.monotonic()
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _open(self) -> None:
        self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Answer:
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            body = b"".join(chunks)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Answer(status, headers, body)
