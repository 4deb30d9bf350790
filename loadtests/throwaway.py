"""Throwaway PostgreSQL and Redis servers that a test or a chaos experiment owns outright.

The machine's own servers are shared and must never be stopped or reconfigured; these can be
stopped, killed, restarted and broken at will. Each lives in a temporary directory on 127.0.0.1
at a port of its own, and everything it started is ended by PID and reaped, never by name.

A killed postmaster leaves its backends behind as orphans, and PID 1 on these machines reaps
orphans only every second or two; until they are gone a new postmaster on the same data directory
may refuse to start. So PostgreSQL runs under a small reaper: a Python process that is a child
subreaper (``PR_SET_CHILD_SUBREAPER``), so the orphans become its children, and that exits only
when it has reaped them all. Waiting for the reaper is waiting for every process of the server,
and once ``kill()`` returns the cluster can be started again at once.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from loadtests.server import free_port

__all__ = ["PG_BIN_DIR", "ThrowawayPostgres", "ThrowawayRedis"]

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")

# Runs the command in argv[3:] as user argv[1] and group argv[2] ("-" for "as we are"), prints its
# PID, then reaps it and every orphan it leaves behind.
_REAPER = """\
import ctypes, os, subprocess, sys
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
uid, gid, *argv = sys.argv[1:]
identity = {} if uid == "-" else {"user": int(uid), "group": int(gid), "extra_groups": []}
child = subprocess.Popen(argv, stdout=sys.stderr, **identity)
print(child.pid, flush=True)
status = child.wait()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
sys.exit(status if status >= 0 else 128 - status)
"""


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reaped(process: subprocess.Popen[Any], timeout_s: float) -> bool:
    """Wait for our child ``process`` to exit and reap it; False if it outlived ``timeout_s``."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


class _Throwaway:
    """A server this process owns, in a temporary directory: a context manager that starts it,
    and stops it and deletes the directory on the way out."""

    _root: Path | None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ThrowawayPostgres(_Throwaway):
    """A PostgreSQL cluster of our own: ``initdb`` into a temporary directory, then ``postgres``.

    Durable like production (``fsync``, ``synchronous_commit``), so a ``kill()`` is a real crash
    followed by a real recovery. Small (16 MB of shared buffers) unless ``settings`` (more
    ``-c name=value`` options) say otherwise, because tests run many of these at once.
    ``stop()`` and ``kill()`` keep the data directory and the port; ``start()`` brings the same
    cluster back. As root, ``initdb`` and ``postgres`` run as ``os_user``, because PostgreSQL
    refuses to run as root. Leaving the ``with`` block stops the server and deletes the directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        bin_dir: Path = PG_BIN_DIR,
        os_user: str = "postgres",
        ready_timeout_s: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.bin_dir = bin_dir
        self.ready_timeout_s = ready_timeout_s
        self._as = pwd.getpwnam(os_user) if os.geteuid() == 0 else None
        self._root: Path | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("the server has never been started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int:
        """The postmaster's PID (for signals such as ``SIGSTOP``); valid while it runs."""
        if self._pid is None:
            raise RuntimeError("the server is not running")
        return self._pid

    @property
    def running(self) -> bool:
        return self._reaper is not None and self._reaper.poll() is None

    def start(self) -> None:
        """Start the server (creating the cluster the first time); return once it accepts."""
        if self._reaper is not None:
            raise RuntimeError("the server is already started")
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))
            (self._root / "run").mkdir()
            self._give(self._root, self._root / "run")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        who = self._as
        identity = [str(who.pw_uid), str(who.pw_gid)] if who else ["-", "-"]
        # postmaster.pid and the socket lock left by a kill() need no cleaning here: they name a
        # PID that is gone (we reaped it), which PostgreSQL recognises as stale, and it reads the
        # dead server's shared-memory key from postmaster.pid to remove that segment.
        command = [
            str(self.bin_dir / "postgres"),
            *("-D", str(self.data_dir), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1"),
            *("-c", f"unix_socket_directories={self.root / 'run'}"),
            *("-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"),
            *("-c", "shared_buffers=16MB"),
            *(part for name, value in self.settings.items() for part in ("-c", f"{name}={value}")),
        ]
        with self.log_path.open("ab") as log:
            reaper = subprocess.Popen(
                [sys.executable, "-c", _REAPER, *identity, *command],
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.root,
                # A group of its own, so that a Ctrl-C meant for the test runner does not reach
                # it before the ``with`` block has had its chance to stop it in order.
                process_group=0,
            )
        self._reaper = reaper
        assert reaper.stdout is not None
        line = reaper.stdout.readline()
        reaper.stdout.close()
        if not line.strip().isdigit():
            self.kill()
            raise RuntimeError(f"postgres did not start; {self.log_path}:\n{_tail(self.log_path)}")
        self._pid = int(line)
        self._wait_ready()

    def stop(self, mode: Literal["fast", "immediate"] = "fast", timeout_s: float = 30.0) -> None:
        """Shut down: ``fast`` (SIGINT) checkpoints first, ``immediate`` (SIGQUIT) does not, so
        the next start runs crash recovery. Falls back to ``kill()`` after ``timeout_s``."""
        if self._reaper is None:
            return
        if self._pid is not None and self._reaper.poll() is None:
            _signal(self._pid, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        if not _reaped(self._reaper, timeout_s):
            self.kill()
            return
        self._reaper = self._pid = None

    def kill(self, timeout_s: float = 30.0) -> None:
        """``kill -9`` the postmaster, as in a crash, and wait until every backend has gone."""
        if self._reaper is None:
            return
        if self._pid is not None and self._reaper.poll() is None:
            _signal(self._pid, signal.SIGKILL)
        # Orphaned backends exit when they notice that the postmaster is gone; until they have,
        # the old shared memory is in use and a new postmaster would refuse to start.
        if not _reaped(self._reaper, timeout_s):
            # A backend that cannot notice (stopped, say): kill what the reaper still waits for.
            # PostgreSQL's processes each lead a session of their own, so a process-group kill
            # would miss them; the reaper's children are exactly ours.
            reaper = self._reaper.pid
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{reaper}/task/{reaper}/children").read_text().split()
                for child in children:
                    _signal(int(child), signal.SIGKILL)
            self._reaper.wait()
        self._reaper = self._pid = None

    def _give(self, *paths: Path) -> None:
        if self._as is not None:
            for path in paths:
                os.chown(path, self._as.pw_uid, self._as.pw_gid)

    def _as_user(self) -> dict[str, Any]:
        if self._as is None:
            return {}
        return {"user": self._as.pw_uid, "group": self._as.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        # --no-sync only skips initdb's own final flush of the new cluster: a crash of the machine
        # loses the throwaway anyway, while the server itself runs with fsync=on.
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                *("-D", str(self.data_dir), "-A", "trust", "-U", "postgres"),
                *("-E", "UTF8", "--no-locale", "--no-sync"),
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._as_user(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _wait_ready(self) -> None:
        isready = [
            str(self.bin_dir / "pg_isready"),
            *("-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "1"),
        ]
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self._reaper is not None
            if self._reaper.poll() is not None:
                self._reaper = self._pid = None
                raise RuntimeError(f"postgres exited; {self.log_path}:\n{_tail(self.log_path)}")
            if subprocess.run(isready, timeout=5, check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(
            f"postgres not ready after {self.ready_timeout_s} s; {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )


class ThrowawayRedis(_Throwaway):
    """A ``redis-server`` of our own, in the foreground (not daemonized) so we hold its PID.

    No persistence: a restart starts empty, and settings changed by ``make_errors()`` are gone
    after one.
    """

    def __init__(self, port: int | None = None, *, ready_timeout_s: float = 10.0) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.ready_timeout_s = ready_timeout_s
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        if self._root is None:
            raise RuntimeError("the server has never been started")
        return self._root / "redis.log"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the server is already started")
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="throwaway-redis-"))
        command = [
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no"),
            *("--save", "", "--appendonly", "no", "--dir", str(self._root), "--logfile", ""),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self._root
            )
        self._wait_ready()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: with nothing to save, Redis closes its clients and exits."""
        if self._process is None:
            return
        if self._process.poll() is None:
            _signal(self._process.pid, signal.SIGTERM)
        if not _reaped(self._process, timeout_s):
            self.kill()
            return
        self._process = None

    def kill(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            _signal(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def make_errors(self) -> None:
        """Make every write and every script answer ``OOM command not allowed``; reads still work."""
        with self._client() as client:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", 1)

    def clear_errors(self) -> None:
        with self._client() as client:
            client.config_set("maxmemory", 0)

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"redis-server exited; {self.log_path}:\n{_tail(self.log_path)}")
            with (
                contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError),
                self._client() as client,
            ):
                if client.ping():
                    return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"redis-server not ready after {self.ready_timeout_s} s")
