"""Run the real server as a child process on 127.0.0.1, for crash tests, benchmarks and chaos.

Everything started here is ended here, by PID: ``kill()`` is ``kill -9`` of our own child, and
``wait()`` reaps it so no zombie is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "cli", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, env: dict[str, str]) -> str:
    """Run ``matching-engine ARGS`` with the given ``ME_`` settings; answer its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "matching_engine.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"matching-engine {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def create_account(name: str, role: str, env: dict[str, str]) -> tuple[str, str]:
    """``(account_id, api_key)`` of a new account, made through the CLI as an SRE would."""
    line = json.loads(cli("accounts", "create", name, "--role", role, env=env).strip())
    return line["account_id"], line["api_key"]


class ServerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 60.0) -> None:
        assert self._process is None, "already running"
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "matching_engine.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self._process.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout_s} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs, exactly like a crash."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
            self._process = None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
