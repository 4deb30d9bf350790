"""``matching-engine serve``: the gateway under a real uvicorn, in exactly one process."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.http_protocol import HttpProtocol
from matching_engine import logs
from matching_engine.cli import main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TestServeCommand:
    @pytest.fixture(autouse=True)
    def _logging_left_as_found(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``serve`` configures the process's logging: undone after each test."""
        root = logging.getLogger()
        monkeypatch.setattr(root, "handlers", list(root.handlers))
        monkeypatch.setattr(root, "level", root.level)
        monkeypatch.setattr(logs, "_handler", logs._handler)

    def test_it_runs_one_uvicorn_worker_with_the_given_address(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        calls: list[tuple[Any, dict[str, Any]]] = []
        monkeypatch.setenv("ME_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("ME_LOG_LEVEL", "warning")
        monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))

        assert main(["serve", "--host", "0.0.0.0", "--port", "9123", "--no-migrate"]) == 0

        [(app, options)] = calls
        assert isinstance(app, FastAPI)
        assert options == {
            "host": "0.0.0.0",
            "port": 9123,
            "workers": 1,
            "log_level": "warning",
            # Our JSON logging, and our own line per request instead of uvicorn's access log.
            "log_config": None,
            "access_log": False,
            # httptools, each answer in one write.
            "http": HttpProtocol,
            # No proxy named: forwarded headers are not read at all.
            "proxy_headers": False,
            "forwarded_allow_ips": None,
        }
        assert isinstance(logging.getLogger().handlers[-1].formatter, logs.JsonFormatter)

    @staticmethod
    def _uvicorn_options(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]
    ) -> dict[str, Any]:
        """What ``main(argv)`` hands to ``uvicorn.run`` besides the app."""
        calls: list[dict[str, Any]] = []
        monkeypatch.setenv("ME_DATA_DIR", str(tmp_path))
        monkeypatch.setattr(uvicorn, "run", lambda _app, **options: calls.append(options))
        main(argv)
        [options] = calls
        return options

    def test_forwarded_headers_are_read_from_the_proxies_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("ME_FORWARDED_ALLOW_IPS", "10.0.0.7,10.0.0.8")

        options = self._uvicorn_options(monkeypatch, tmp_path, ["serve", "--no-migrate"])

        assert (options["proxy_headers"], options["forwarded_allow_ips"]) == (
            True,
            "10.0.0.7,10.0.0.8",
        )

    def test_the_address_defaults_to_the_settings(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("ME_PORT", "9124")
        monkeypatch.delenv("ME_HOST", raising=False)

        options = self._uvicorn_options(monkeypatch, tmp_path, ["serve"])

        assert (options["host"], options["port"]) == ("127.0.0.1", 9124)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``matching-engine serve`` on the embedded default, in a data directory of its own."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ME_")} | {
        "ME_DATA_DIR": str(tmp_path),
        "ME_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "matching_engine.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not become ready within 30 s")
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TestServing:
    def test_it_migrates_recovers_and_serves(self, server: str) -> None:
        ready = httpx.get(f"{server}/readyz", headers={"X-Request-ID": "probe-1"})
        unauthenticated = httpx.get(f"{server}/v1/orders")

        assert ready.json()["status"] == "ready"
        assert ready.headers["x-request-id"] == "probe-1"
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["content-type"] == "application/problem+json"

    def test_a_forged_forwarded_for_does_not_escape_the_address_limit(self, server: str) -> None:
        """Wrong keys, each claiming another client address: without a trusted proxy the
        address is the socket's, so its failed-authentication limit (burst 10) still holds."""
        statuses = [
            httpx.get(
                f"{server}/v1/orders",
                headers={
                    "Authorization": f"Bearer wrong-{attempt}",
                    "X-Forwarded-For": f"203.0.113.{attempt}",
                },
            ).status_code
            for attempt in range(1, 21)
        ]

        assert 429 in statuses
        assert set(statuses) == {401, 429}

    def test_a_declared_oversized_body_is_refused_unread(self, server: str) -> None:
        response = httpx.post(
            f"{server}/v1/orders",
            content=b" " * (70 * 1024),
            headers={"Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
