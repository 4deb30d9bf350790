"""A TCP proxy that injects network faults between a client and one upstream server.

Toxiproxy cannot be installed on these machines, so this is the small part of it that the chaos
experiments need, under the names of its toxics:

``pass``
    forward both ways untouched.
``latency``
    hold every chunk ``latency_s`` seconds in each direction, so a request and its answer cost
    twice that. Chunks keep their order and are timed from when they arrived, as in Toxiproxy.
``down``
    reset every open connection (``SO_LINGER(1, 0)`` then close: the peer gets a TCP RST, not a
    polite FIN) and reset every new one as soon as it is accepted. Unlike Toxiproxy's
    ``enabled=false`` the port keeps listening, so clients see resets rather than refusals, like
    a crashed server behind a load balancer.
``blackhole``
    accept and keep connections but forward nothing, like Toxiproxy's ``timeout`` toxic with a
    timeout of 0: the only way out for a client is its own deadline. Data that arrives meanwhile
    is held back (the proxy stops reading, so TCP flow control pushes back on the sender), and is
    delivered if the mode changes back, like a network partition that heals.
``reset``
    reset the open connections once, like ``reset_peer``; afterwards the mode is ``pass``.

``FaultProxy`` runs in the caller's event loop. ``ThreadedFaultProxy`` runs one in a thread of its
own, so that synchronous code (a test, a chaos script) can break the network of a server process
that talks to its database through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["FaultProxy", "Mode", "ProxyCounters", "ThreadedFaultProxy"]

Mode = Literal["pass", "latency", "down", "blackhole", "reset"]
MODES: frozenset[str] = frozenset({"pass", "latency", "down", "blackhole", "reset"})

_CHUNK = 64 * 1024
# Chunks read ahead of the one being held back; beyond that the proxy stops reading and TCP
# flow control makes the sender wait, so a held connection costs bounded memory.
_READ_AHEAD = 16
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)

T = TypeVar("T")


@dataclass
class ProxyCounters:
    """What went through the proxy since it started."""

    connections_accepted: int = 0
    connections_reset: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0


@dataclass(eq=False)
class _Link:
    """One proxied connection: the task serving it, the client socket and, once open, the
    upstream socket."""

    task: asyncio.Task[None]
    writers: list[asyncio.StreamWriter]


class FaultProxy:
    """An asyncio TCP proxy in front of ``upstream_host:upstream_port``; see the module docstring.

    Listens on ``listen_host`` (loopback by default) at ``listen_port``, or at a free port when it
    is 0; ``port`` tells which once ``start()`` has returned. ``set()`` is synchronous and applies
    at once to open and new connections; call it from the proxy's event loop.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.counters = ProxyCounters()
        self._listen_port = listen_port
        self._mode: Mode = "pass"
        self._latency_s = 0.0
        # Replaced on every set(): whoever holds a chunk waits on it to notice a new mode at once.
        self._changed = asyncio.Event()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def latency_s(self) -> float:
        return self._latency_s

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(
            self._serve, self.listen_host, self._listen_port, reuse_address=True
        )

    def set(self, mode: Mode, latency_s: float = 0.0) -> None:
        """Switch to ``mode``; ``latency_s`` is the one-way delay of ``latency``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
        if latency_s < 0:
            raise ValueError("latency_s must not be negative")
        if mode in ("down", "reset"):
            for link in list(self._links):
                self._reset(link)
        self._mode = "pass" if mode == "reset" else mode
        self._latency_s = latency_s if mode == "latency" else 0.0
        self._changed.set()
        self._changed = asyncio.Event()

    async def stop(self) -> None:
        """Stop listening and reset every connection still open."""
        if self._server is None:
            return
        self._server.close()
        links = list(self._links)
        for link in links:
            self._reset(link)
        await asyncio.gather(*(link.task for link in links), return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.counters.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        link = _Link(task, [client])
        if self._mode == "down":
            self._reset(link)
            return
        self._links.add(link)
        try:
            try:
                upstream_reader, upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                # The upstream refused: the client learns it the same abrupt way.
                self._reset(link)
                return
            link.writers.append(upstream)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._forward(client_reader, upstream, to_upstream=True))
                    group.create_task(self._forward(upstream_reader, client, to_upstream=False))
            except* OSError:
                # One side broke the connection: break the other side too, as a router would.
                self._reset(link)
        except asyncio.CancelledError:
            # _reset() or stop() ended this connection; the sockets are already gone.
            pass
        finally:
            self._links.discard(link)
            for writer in link.writers:
                writer.close()

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_upstream: bool
    ) -> None:
        """Copy one direction until end of file, holding chunks back as the mode says."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_READ_AHEAD)

        async def receive() -> None:
            while data := await reader.read(_CHUNK):
                await chunks.put((loop.time(), data))
            await chunks.put((loop.time(), b""))

        async def send() -> None:
            while True:
                arrived, data = await chunks.get()
                await self._hold(arrived)
                if not data:
                    # Pass the half-close on; the link ends when both directions have.
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                if to_upstream:
                    self.counters.bytes_to_upstream += len(data)
                else:
                    self.counters.bytes_to_client += len(data)

        async with asyncio.TaskGroup() as group:
            group.create_task(receive())
            group.create_task(send())

    async def _hold(self, arrived: float) -> None:
        """Return when a chunk that arrived at ``arrived`` (loop time) may be forwarded."""
        loop = asyncio.get_running_loop()
        while True:
            changed = self._changed
            if self._mode == "blackhole":
                await changed.wait()
                continue
            remaining = arrived + self._latency_s - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _reset(self, link: _Link) -> None:
        """Abort both sockets of ``link`` with a TCP RST and end its task."""
        self.counters.connections_reset += 1
        for writer in link.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            writer.transport.abort()
        self._links.discard(link)
        if link.task is not asyncio.current_task():
            link.task.cancel()


class ThreadedFaultProxy:
    """A ``FaultProxy`` on an event loop in a daemon thread, driven from synchronous code.

    Every method blocks until the proxy's loop has done the work, so after ``set()`` returns the
    new mode is in force.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        timeout_s: float = 10.0,
    ) -> None:
        self.proxy = FaultProxy(
            upstream_host, upstream_port, listen_host=listen_host, listen_port=listen_port
        )
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def mode(self) -> Mode:
        return self.proxy.mode

    @property
    def counters(self) -> ProxyCounters:
        return self.proxy.counters

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self.proxy.start())
        except BaseException:
            self._close_loop()
            raise

    def set(self, mode: Mode, latency_s: float = 0.0) -> None:
        async def apply() -> None:
            self.proxy.set(mode, latency_s)

        self._call(apply())

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._call(self.proxy.stop())
        finally:
            self._close_loop()

    def __enter__(self) -> ThreadedFaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self.timeout_s)

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout_s)
        loop.close()
