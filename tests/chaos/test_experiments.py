"""Two experiments run end to end, briefly, against the real engine, PostgreSQL and Redis.

``python -m loadtests.chaos all`` runs them all at length; these keep the machinery honest in the
test suite: a world is built and torn down, the fault is injected and rolled back, and the
verdict (nothing acknowledged lost, the replay equal to the served state) holds.
"""

from __future__ import annotations

from loadtests.chaos.experiments import Crash, RedisErrors, Result


def _explained(result: Result) -> str:
    return "\n".join(result.lines())


def test_two_kill_9s_under_load_lose_nothing_acknowledged() -> None:
    result = Crash(2.0, kills=2, seed=20240601).run()

    assert result.passed, _explained(result)
    assert result.figures["kills"] == 2
    assert result.acked > 0
    assert result.lost == 0
    assert result.replay_equal is True


def test_redis_errors_fall_back_to_the_local_limiter_and_back() -> None:
    result = RedisErrors(2.0, seed=20240602).run()

    assert result.passed, _explained(result)
    assert result.detect_s is not None
    assert result.recovery_s is not None
    assert result.lost == 0
    assert result.replay_equal is True
