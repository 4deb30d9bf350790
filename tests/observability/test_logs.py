"""Structured logs: one JSON object per line, a line per request and per state change, no keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from matching_engine import logs
from tests.observability.conftest import Scenario

KEY = "me_0123456789abcdef_" + "s3cr3t-_" * 5 + "xyz"  # the shape of an API key


def parsed(scenario: Scenario) -> list[dict[str, Any]]:
    return [json.loads(line) for line in scenario.log_lines]


def events(scenario: Scenario, event: str) -> list[dict[str, Any]]:
    return [line for line in parsed(scenario) if line.get("event") == event]


class TestTheScenarioLog:
    def test_every_line_is_one_json_object_with_the_standard_fields(
        self, scenario: Scenario
    ) -> None:
        assert scenario.log_lines
        for line in parsed(scenario):
            assert {"time", "level", "logger", "message"} <= set(line)
            assert line["time"].endswith("Z")
            moment = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
            assert moment.utcoffset() == timedelta(0)
            assert line["level"] in {"debug", "info", "warning", "error", "critical"}

    def test_each_request_has_one_line_with_its_request_id(self, scenario: Scenario) -> None:
        requests = {line["request_id"]: line for line in events(scenario, "http.request")}
        assert len(events(scenario, "http.request")) == len(requests)
        assert set(scenario.request_ids) <= set(requests)
        assert requests["obs-bad-tick"] | {"duration_ms": None} == requests["obs-bad-tick"] | {
            "logger": "api.access",
            "method": "POST",
            "route": "/v1/orders",
            "status": 422,
            "client": "127.0.0.1",
            "duration_ms": None,
        }
        assert requests["obs-flood-limited"]["status"] == 429
        assert requests["obs-refused"]["status"] == 503
        assert all(line["duration_ms"] >= 0 for line in requests.values())

    def test_lines_logged_while_serving_a_request_carry_its_id(self, scenario: Scenario) -> None:
        [drill, back] = events(scenario, "mode.set")
        assert drill["request_id"] == "obs-cancel-only"
        assert back["request_id"] == "obs-normal"

    def test_mode_changes_are_lines_with_fields(self, scenario: Scenario) -> None:
        [drill, back] = events(scenario, "mode.set")
        assert (drill["from_mode"], drill["to_mode"], drill["target"]) == (
            "normal",
            "cancel_only",
            "engine",
        )
        assert drill["reason"] == "observability drill"
        assert drill["actor"].startswith("acc_")
        assert (back["from_mode"], back["to_mode"]) == ("cancel_only", "normal")

    def test_recovery_and_snapshots_are_lines_with_fields(self, scenario: Scenario) -> None:
        [recovery] = events(scenario, "recovery")
        assert recovery["sequence"] == recovery["snapshot_sequence"] == recovery["replayed"] == 0
        # A snapshot every 5 commands: at 5 and at 10 (the 2 instruments, then 9 orders).
        snapshots = events(scenario, "snapshot")
        assert [line["sequence"] for line in snapshots] == [5, 10]
        assert all(line["bytes"] > 0 for line in snapshots)
        assert not events(scenario, "snapshot.failed")

    def test_no_line_holds_an_api_key_or_an_authorization_value(self, scenario: Scenario) -> None:
        text = "\n".join(scenario.log_lines)
        for key in scenario.api_keys:
            assert key not in text
            assert key.split("_", 2)[2] not in text  # not even the secret alone (it may hold "_")
        assert "Bearer" not in text
        assert "authorization" not in text.lower()


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The log as configured for production, into a buffer; the root logger restored after."""
    root = logging.getLogger()
    level, previous = root.level, logs._handler
    stream = io.StringIO()
    handler = logs.configure_logging("debug", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    logs._handler = previous


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestTheFormat:
    def test_extra_fields_and_the_bound_request_id_are_fields(self, stream: io.StringIO) -> None:
        token = logs.request_id.set("req-1")
        try:
            logging.getLogger("tests.logs").warning("hello %s", "world", extra={"symbol": "X"})
        finally:
            logs.request_id.reset(token)
        [line] = lines(stream)
        assert line["message"] == "hello world"
        assert line["level"] == "warning"
        assert line["logger"] == "tests.logs"
        assert (line["request_id"], line["symbol"]) == ("req-1", "X")

    def test_an_exception_is_one_field_of_the_same_line(self, stream: io.StringIO) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("tests.logs").exception("failed")
        [line] = lines(stream)
        assert "ValueError: boom" in line["exception"]

    def test_plain_text_for_humans(self) -> None:
        root, previous = logging.getLogger(), logs._handler
        buffer = io.StringIO()
        handler = logs.configure_logging("info", json=False, stream=buffer)
        try:
            logging.getLogger("tests.logs").info("ready", extra={"port": 8000})
        finally:
            root.removeHandler(handler)
            logs._handler = previous
        assert buffer.getvalue().rstrip().endswith("tests.logs: ready port=8000")

    def test_configuring_again_replaces_the_handler(self, stream: io.StringIO) -> None:
        root = logging.getLogger()
        first = logs._handler
        second = logs.configure_logging("debug", stream=stream)
        assert first not in root.handlers
        assert root.handlers.count(second) == 1


class TestRedaction:
    """The last line of defence: a key that reaches a log is masked wherever it is."""

    def test_in_the_message_and_its_arguments(self, stream: io.StringIO) -> None:
        log = logging.getLogger("tests.logs")
        log.warning(f"key {KEY} in the text")
        log.warning("key %s in an argument", KEY)
        for line in lines(stream):
            assert KEY not in json.dumps(line)
            assert "me_0123456789abcdef_[REDACTED]" in line["message"]

    def test_in_fields(self, stream: io.StringIO) -> None:
        logging.getLogger("tests.logs").warning(
            "fields", extra={"header": f"Bearer {KEY}", "detail": {"key": KEY}}
        )
        [line] = lines(stream)
        assert KEY not in json.dumps(line)
        assert line["header"] == "Bearer me_0123456789abcdef_[REDACTED]"

    def test_in_a_stack_trace(self, stream: io.StringIO) -> None:
        try:
            raise PermissionError(f"bad key {KEY}")
        except PermissionError:
            logging.getLogger("tests.logs").exception("refused")
        [line] = lines(stream)
        assert "PermissionError" in line["exception"]
        assert KEY not in line["exception"]

    def test_in_arguments_that_do_not_fit_the_format(self, stream: io.StringIO) -> None:
        logging.getLogger("tests.logs").warning("one %s", KEY, "two")
        [line] = lines(stream)
        assert KEY not in line["message"]
        assert "[REDACTED]" in line["message"]

    def test_text_without_a_key_is_left_alone(self) -> None:
        assert logs.redact("me_short_key and 50% of me_") == "me_short_key and 50% of me_"
