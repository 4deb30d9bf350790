"""Engine snapshots pickled in a forked child, so that the order path pauses only for the fork.

Theory of operation
-------------------
A snapshot must be the engine's state at one sequence number, so nothing may change it while it
is pickled; pickling it in the server's own process stops the sequencer for as long as that takes,
about 6 µs per order (six seconds for a million resting orders). ``fork()`` gives a child process
the engine's memory at that instant, copy-on-write: the child pickles its copy and writes the bytes
to a pipe, while the server goes on matching. The sequencer pauses only for the fork itself, which
copies page tables, not pages (milliseconds).

The server has other threads (asyncio's executor, aiosqlite's); the child has only the one that
forked, which held the GIL, so the interpreter's state is whole, while a lock another thread held
stays locked in the child forever. Hence the child runs no code of the server's but the pickling
of plain objects: no event loop, no logging, no database driver, and a failure's traceback goes
to file descriptor 2 directly, not through ``sys.stderr`` and its lock. It closes every file
descriptor but the pipe and the standard streams first (no socket of the server's outlives the
server in it), and ends with ``os._exit`` whatever happens, so no cleanup handler inherited from
the server runs twice. While it lives, pages the server writes to are copied, so memory grows by
at most the engine's size, and for that long only. It runs at a lower priority than the server,
and is the first process the kernel kills when memory runs out.

:meth:`ForkedSnapshot.collect` (blocking: run it in a thread) reads the bytes, reaps the child and
answers them; a child that fails or outlives the deadline is killed and reaped, and ``collect``
raises. Every child is reaped, so none is left behind as a zombie.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import time
import traceback
from pathlib import Path

from matching_engine.core import MatchingEngine

__all__ = ["ForkedSnapshot", "SnapshotFailed"]

_CHUNK = 1 << 20


class SnapshotFailed(RuntimeError):
    """The child did not deliver a snapshot."""


class ForkedSnapshot:
    """A child process pickling ``engine`` as it is at construction."""

    def __init__(self, engine: MatchingEngine) -> None:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:
            _run_child(engine, read_fd, write_fd)  # never returns
        os.close(write_fd)
        self.pid = pid
        self._read_fd = read_fd

    def collect(self, timeout_s: float) -> bytes:
        """The pickled engine, once the child has written all of it (blocking)."""
        deadline = time.monotonic() + timeout_s
        chunks: list[bytes] = []
        readable = select.poll()  # not select(): a busy server's descriptors pass 1024
        readable.register(self._read_fd, select.POLLIN)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not readable.poll(remaining * 1000):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    raise SnapshotFailed(f"the snapshot child took longer than {timeout_s} s")
                chunk = os.read(self._read_fd, _CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self._read_fd)
            _, status = os.waitpid(self.pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise SnapshotFailed(f"the snapshot child failed (wait status {status})")
        return b"".join(chunks)


def _run_child(engine: MatchingEngine, read_fd: int, write_fd: int) -> None:
    status = 1
    try:
        os.close(read_fd)
        # Only the pipe and the standard streams stay open: an inherited listening socket would
        # keep the server's port bound (and take its connections) after the server died.
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
        # A signal meant for the server must not reach its event loop through the wakeup fd
        # the child shares with it: the child takes the default actions instead.
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        # The server comes first: the child yields the processor to it, and if memory runs
        # short the kernel's out-of-memory killer picks the child (a lost snapshot) rather than
        # the server (an outage).
        os.nice(10)
        with contextlib.suppress(OSError):
            Path("/proc/self/oom_score_adj").write_text("1000")
        # Collecting would only touch (and so copy) more of the parent's pages.
        gc.disable()
        view = memoryview(engine.snapshot())
        while view:
            view = view[os.write(write_fd, view) :]
        status = 0
    except BaseException:
        with contextlib.suppress(BaseException):  # the parent reports the failure; this says why
            os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(status)
