"""api.http_protocol: uvicorn's httptools protocol, sending each answer in one write."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http_protocol import CoalescingTransport, HttpProtocol

pytestmark = pytest.mark.asyncio


class RecordingTransport:
    """What a transport was asked to do, and nothing more."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.extra = {"peername": ("127.0.0.1", 50000)}

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def coalescing(transport: RecordingTransport) -> CoalescingTransport:
    return CoalescingTransport(cast(asyncio.Transport, transport), asyncio.get_running_loop())


async def a_loop_pass() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class TestCoalescingTransport:
    async def test_writes_of_one_pass_reach_the_socket_as_one_write_after_it(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        wrapped.write(b"HTTP/1.1 201 Created\r\n\r\n")
        wrapped.writelines([b"{", b"}"])
        held = list(transport.writes)
        await a_loop_pass()

        assert held == []
        assert transport.writes == [b"HTTP/1.1 201 Created\r\n\r\n{}"]

    async def test_writes_of_later_passes_are_later_writes(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        wrapped.write(b"first")
        await a_loop_pass()
        wrapped.write(b"second")
        await a_loop_pass()

        assert transport.writes == [b"first", b"second"]

    async def test_close_sends_what_is_held_first(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        wrapped.write(b"last words")
        wrapped.close()
        await a_loop_pass()

        assert transport.writes == [b"last words"]
        assert transport.closed

    async def test_empty_writes_send_nothing(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        wrapped.write(b"")
        wrapped.writelines([])
        await a_loop_pass()

        assert transport.writes == []

    async def test_what_is_held_when_the_connection_closes_is_dropped(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        wrapped.write(b"too late")
        transport.closed = True  # the peer went away within the pass
        await a_loop_pass()

        assert transport.writes == []

    async def test_everything_else_is_the_transports_own(self) -> None:
        transport = RecordingTransport()
        wrapped = coalescing(transport)

        assert wrapped.get_extra_info("peername") == ("127.0.0.1", 50000)
        assert not wrapped.is_closing()


# -- under a real uvicorn ---------------------------------------------------------------------


class CountingTransport:
    """The real transport, counting the writes that reach it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counted(protocol: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Counted(protocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            counting = CountingTransport(cast(asyncio.Transport, transport), writes)
            super().connection_made(cast(asyncio.Transport, counting))

    return Counted


BIG = 4 * 1024 * 1024  # past any socket buffer: the transport must pause the writer


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"x" * BIG if path == "/big" else path.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(protocol: type[asyncio.Protocol]) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, request: bytes, answers: int) -> bytes:
    """Send ``request`` (possibly several pipelined), read until ``answers`` bodies are in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        received = b""
        async with asyncio.timeout(10):
            while received.count(b"HTTP/1.1 ") < answers or not _complete(received, answers):
                chunk = await reader.read(65536)
                assert chunk, f"connection closed after {received[:200]!r}"
                received += chunk
        return received
    finally:
        writer.close()


def _complete(received: bytes, answers: int) -> bool:
    """Whether the last of ``answers`` answers is whole (by content-length, or chunked end)."""
    last = received.split(b"HTTP/1.1 ")[answers]
    head, separator, body = last.partition(b"\r\n\r\n")
    if not separator:
        return False
    if b"transfer-encoding: chunked" in head:
        return body.endswith(b"0\r\n\r\n")
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    return len(body) >= length


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode()


class TestUnderUvicorn:
    async def test_each_answer_is_one_write(self) -> None:
        coalesced: list[bytes] = []
        plain: list[bytes] = []
        async with serving(counted(HttpProtocol, coalesced)) as port:
            received = await exchange(port, get("/a"), 1)
        async with serving(counted(HttpToolsProtocol, plain)) as port:
            await exchange(port, get("/a"), 1)

        assert coalesced == [received]
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"\r\n\r\n/a")
        assert len(plain) == 2  # uvicorn alone: the head, then the body

    async def test_pipelined_requests_are_answered_whole_and_in_order(self) -> None:
        async with serving(HttpProtocol) as port:
            received = await exchange(port, get("/first") + get("/second") + get("/third"), 3)

        bodies = [answer.rpartition(b"\r\n\r\n")[2] for answer in received.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [b"/first", b"/second", b"/third"]

    async def test_a_streamed_answer_arrives_whole(self) -> None:
        async with serving(HttpProtocol) as port:
            received = await exchange(port, get("/streamed"), 1)

        body = received.partition(b"\r\n\r\n")[2]
        assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"

    async def test_an_answer_larger_than_the_socket_buffers_arrives_whole(self) -> None:
        async with serving(HttpProtocol) as port:
            received = await exchange(port, get("/big"), 1)

        assert received.partition(b"\r\n\r\n")[2] == b"x" * BIG
