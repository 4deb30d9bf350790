"""The world an experiment owns: its own PostgreSQL behind a fault proxy, its own Redis, the real
engine as a child process, accounts made with the command line, and one instrument.

Everything listens on 127.0.0.1 and is ended by its own PID when the ``with`` block ends, on
failure too. The engine's settings make faults show quickly: a 2 s breaker reset, a 1 s statement
timeout, a 2 s commit timeout and a 3 s request deadline.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from loadtests.faultproxy import ThreadedFaultProxy
from loadtests.server import ServerProcess
from loadtests.throwaway import ThrowawayPostgres, ThrowawayRedis

__all__ = ["INSTRUMENT", "SYMBOL", "World"]

SYMBOL = "CHAOS-USD"
INSTRUMENT = {
    "symbol": SYMBOL,
    "tick_size": "0.01",
    "lot_size": "0.1",
    "min_quantity": "0.1",
    "max_quantity": "1000",
}
TICK_SIZE = Decimal(INSTRUMENT["tick_size"])
LOT_SIZE = Decimal(INSTRUMENT["lot_size"])

# Short deadlines, so that a fault is detected and left within seconds. Per-account limits are
# far above the load (rate limiting is not what most experiments are about, and the checks read
# a lot), while the per-address limits of public reads and failed logins stay tight enough to be
# seen working.
BASE_ENV = {
    "ME_DB_BREAKER_FAIL_MAX": "3",
    "ME_DB_BREAKER_RESET_S": "2",
    "ME_DB_STATEMENT_TIMEOUT_S": "1",
    "ME_DB_COMMIT_TIMEOUT_S": "2",
    "ME_DB_CONNECT_TIMEOUT_S": "1",
    "ME_DB_POOL_TIMEOUT_S": "1",
    "ME_REQUEST_DEADLINE_S": "3",
    # Redis answers in well under a millisecond here, but the engine's event loop, sharing two
    # cores with the load and the databases, may not read the answer for a while: the 100 ms
    # default opens the Redis breaker with no fault at all on a busy machine.
    "ME_REDIS_SOCKET_TIMEOUT_S": "0.5",
    "ME_REDIS_BREAKER_FAIL_MAX": "3",
    "ME_REDIS_BREAKER_RESET_S": "2",
    "ME_SNAPSHOT_EVERY_COMMANDS": "500",
    "ME_RATE_LIMIT_ORDERS_PER_S": "5000",
    "ME_RATE_LIMIT_ORDERS_BURST": "5000",
    "ME_RATE_LIMIT_READS_PER_S": "5000",
    "ME_RATE_LIMIT_READS_BURST": "5000",
    "ME_RATE_LIMIT_PUBLIC_PER_S": "100",
    "ME_RATE_LIMIT_PUBLIC_BURST": "100",
    "ME_LOG_LEVEL": "warning",
}
REQUEST_DEADLINE_S = float(BASE_ENV["ME_REQUEST_DEADLINE_S"])


class World:
    """Build with ``with World(name, traders=N) as world:``; see the module docstring."""

    def __init__(self, name: str, *, traders: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.trader_count = traders
        self.extra_env = env or {}
        self.root = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
        self.keep = False  # keep the directory (logs, history) after the run
        self.env: dict[str, str] = {}
        self.admin_key = ""
        self.traders: dict[str, str] = {}  # name -> API key
        self._stack = ExitStack()

    # -- the parts -----------------------------------------------------------------------------

    def __enter__(self) -> World:
        try:
            self._build()
        except BaseException:
            self.keep = True  # the server's log says why
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self._stack.close()
        finally:
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def _build(self) -> None:
        stack = self._stack
        self.postgres = stack.enter_context(ThrowawayPostgres())
        self.db_proxy = stack.enter_context(ThreadedFaultProxy("127.0.0.1", self.postgres.port))
        self.redis = stack.enter_context(ThrowawayRedis())
        self.env = {
            "ME_DATABASE_URL": (
                f"postgresql+asyncpg://postgres@127.0.0.1:{self.db_proxy.port}/postgres"
            ),
            "ME_REDIS_URL": self.redis.url,
            "ME_DATA_DIR": str(self.root / "data"),
            **BASE_ENV,
            **self.extra_env,
        }
        # ``matching-engine accounts create`` migrates the database first.
        self.admin_key = self.create_account("sre", "admin")
        for number in range(self.trader_count):
            self.traders[f"trader{number}"] = self.create_account(f"trader{number}", "trader")
        self.server = ServerProcess(self.env, self.root / "server.log")
        stack.callback(self._stop_server)
        self.server.start()
        created = self.admin("POST", "/v1/admin/instruments", json=INSTRUMENT)
        if created.status_code != 201:
            raise RuntimeError(f"could not create the instrument: {created.text}")

    def create_account(self, name: str, role: str) -> str:
        """The API key of a new account, from ``matching-engine accounts create`` run in this
        process: the same command, without a Python start-up (a second or more) per account."""
        from matching_engine.cli import main

        printed = io.StringIO()
        saved = {variable: os.environ.get(variable) for variable in self.env}
        os.environ.update(self.env)
        try:
            with contextlib.redirect_stdout(printed):
                status = main(["accounts", "create", name, "--role", role])
        finally:
            for variable, value in saved.items():
                if value is None:
                    os.environ.pop(variable, None)
                else:
                    os.environ[variable] = value
        if status != 0:
            raise RuntimeError(f"matching-engine accounts create {name} exited with {status}")
        key: str = json.loads(printed.getvalue().strip().splitlines()[-1])["api_key"]
        return key

    def _stop_server(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.server.stop(timeout_s=10)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    # -- talking to it -------------------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def readyz(self) -> httpx.Response:
        return httpx.get(self.url + "/readyz", timeout=5)

    def replay(self) -> dict[str, Any]:
        """The summary of ``matching-engine replay`` with the engine's settings (stop the engine
        first), and its exit code under ``exit_code``: 1 when a snapshot disagrees."""
        done = subprocess.run(
            [sys.executable, "-m", "matching_engine.cli", "replay"],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if not done.stdout.strip():
            raise RuntimeError(f"matching-engine replay failed:\n{done.stderr}")
        summary: dict[str, Any] = json.loads(done.stdout)
        summary["exit_code"] = done.returncode
        return summary
