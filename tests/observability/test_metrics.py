"""``/metrics`` after a scripted run: the samples each part of the engine is meant to show.

See :class:`tests.observability.conftest.Scenario` for what the run did. Counters without a
symbol label are shared with the rest of the test session, so they are read as increments.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from matching_engine import __version__
from matching_engine.core import CORE_BUILD
from tests.observability.conftest import Scenario

ORDERS = "matching_engine_orders_total"
HTTP = "matching_engine_http_requests_total"


class TestHttpRequests:
    def test_they_are_counted_by_route_template_and_status_class(self, scenario: Scenario) -> None:
        orders = {"route": "/v1/orders", "method": "POST"}
        # 4 orders on the first symbol, 5 on the other; invalid tick and rate limited; cancel-only
        assert scenario.delta(HTTP, **orders, status="2xx") == 9
        assert scenario.delta(HTTP, **orders, status="4xx") == 2
        assert scenario.delta(HTTP, **orders, status="5xx") == 1
        assert scenario.delta(HTTP, route="/v1/admin/mode", method="PUT", status="2xx") == 2
        assert scenario.delta(HTTP, route="/v1/orders", method="GET", status="4xx") == 1

    def test_no_raw_path_becomes_a_label(self, scenario: Scenario) -> None:
        routes = {dict(labels)["route"] for name, labels in scenario.after.samples if name == HTTP}
        assert all(route == "unmatched" or route.startswith("/") for route in routes)
        assert not any(scenario.symbol in route for route in routes)


class TestOrders:
    def test_each_outcome_and_reason_is_counted(self, scenario: Scenario) -> None:
        assert scenario.delta(ORDERS, outcome="new", reason="none") == 7
        assert scenario.delta(ORDERS, outcome="filled", reason="none") == 1
        assert scenario.delta(ORDERS, outcome="rejected", reason="post_only_would_cross") == 1

    def test_refusals_are_counted_by_their_error_code(self, scenario: Scenario) -> None:
        assert scenario.delta(ORDERS, outcome="refused", reason="invalid_tick") == 1
        assert scenario.delta(ORDERS, outcome="refused", reason="cancel_only") == 1
        assert scenario.delta(ORDERS, outcome="refused", reason="rate_limited") == 1
        # Failed authentication is not an order refused.
        assert scenario.delta(ORDERS, outcome="refused", reason="unauthenticated") == 0

    def test_the_rate_limiter_reports_its_refusal(self, scenario: Scenario) -> None:
        decisions = "matching_engine_rate_limit_decisions_total"
        limited = {"scope": "orders", "outcome": "limited", "backend": "local"}
        assert scenario.delta(decisions, **limited) == 1
        assert scenario.delta(decisions, scope="orders", outcome="allowed") == 11


class TestTrading:
    def test_trades_and_traded_quantity_per_symbol(self, scenario: Scenario) -> None:
        trades = scenario.after.value("matching_engine_trades_total", symbol=scenario.symbol)
        quantity = "matching_engine_traded_quantity_total"
        assert trades == 1
        assert scenario.after.value(quantity, symbol=scenario.symbol) == pytest.approx(0.5)
        # Nothing traded on the other symbol: no series at all.
        assert math.isnan(scenario.after.value(quantity, symbol=scenario.other_symbol))

    def test_best_bid_and_ask_in_price_units(self, scenario: Scenario) -> None:
        bid, ask = "matching_engine_best_bid_price", "matching_engine_best_ask_price"
        assert scenario.after.value(bid, symbol=scenario.symbol) == 99
        assert scenario.after.value(ask, symbol=scenario.symbol) == 101
        assert scenario.after.value(bid, symbol=scenario.other_symbol) == 90
        # No ask rests on the other symbol: the gauge is there, and NaN.
        assert math.isnan(
            scenario.after.samples[(ask, frozenset({("symbol", scenario.other_symbol)}))]
        )

    def test_every_applied_command_is_timed_in_the_core(self, scenario: Scenario) -> None:
        # The 9 orders let through; the refused ones never reached the core.
        assert scenario.delta("matching_engine_match_seconds_count") == 9
        assert scenario.after.value("matching_engine_match_seconds_bucket", le="0.01") > 0

    def test_the_journal_commits_them_in_batches(self, scenario: Scenario) -> None:
        assert scenario.delta("matching_engine_journal_batch_commands_sum") == 9
        assert 1 <= scenario.delta("matching_engine_journal_batch_commands_count") <= 9
        assert scenario.delta("matching_engine_journal_commit_seconds_count") >= 1


class TestState:
    def test_the_mode_is_back_to_normal_after_two_changes(self, scenario: Scenario) -> None:
        assert scenario.after.value("matching_engine_mode", mode="normal") == 1
        assert scenario.after.value("matching_engine_mode", mode="cancel_only") == 0
        changes = "matching_engine_mode_changes_total"
        assert scenario.delta(changes, to_mode="cancel_only", cause="sre") == 1
        assert scenario.delta(changes, to_mode="normal", cause="sre") == 1

    def test_the_database_breaker_is_closed(self, scenario: Scenario) -> None:
        state = "matching_engine_breaker_state"
        assert scenario.after.value(state, dependency="database", state="closed") == 1
        assert scenario.after.value(state, dependency="database", state="open") == 0

    def test_a_snapshot_was_taken_just_now(self, scenario: Scenario) -> None:
        # Snapshots every 5 commands: one at least was stored during the run.
        taken = scenario.after.value("matching_engine_snapshot_last_timestamp_seconds")
        age = scenario.after.value("matching_engine_snapshot_age_seconds")
        assert taken > scenario.before.value("matching_engine_snapshot_last_timestamp_seconds")
        assert 0 <= age < 60
        assert scenario.after.value("matching_engine_snapshot_sequence") == 10

    def test_the_build_is_identified(self, scenario: Scenario) -> None:
        build = {"version": __version__, "core": CORE_BUILD}
        assert scenario.after.value("matching_engine_build_info", **build) == 1


def _promtool() -> str | None:
    for candidate in (
        os.environ.get("PROMTOOL"),
        shutil.which("promtool"),
        "/tmp/prom/usr/bin/promtool",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_the_whole_scrape_passes_promtool(scenario: Scenario) -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool is not installed (set PROMTOOL to its path)")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=scenario.after.text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
