"""SortedKeys, the ordered price keys of a book side, against a plain sorted set."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from matching_engine.core._book import _CHUNK, SortedKeys


def check(keys: SortedKeys, expected: set[int]) -> None:
    ordered = sorted(expected)
    assert list(keys) == ordered
    assert len(keys) == len(ordered)
    if ordered:
        assert keys.first() == ordered[0]
    assert keys.maxima == [chunk[-1] for chunk in keys.chunks]
    assert all(chunk for chunk in keys.chunks)  # no empty chunk is kept
    assert all(len(chunk) <= 2 * _CHUNK for chunk in keys.chunks)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3 * _CHUNK, 3 * _CHUNK)), max_size=4000))
def test_adds_and_removes_keep_the_keys_in_order(operations: list[tuple[bool, int]]) -> None:
    keys, expected = SortedKeys(), set[int]()
    for adding, key in operations:
        if adding and key not in expected:
            keys.add(key)
            expected.add(key)
        elif not adding and key in expected:
            keys.remove(key)
            expected.remove(key)
    check(keys, expected)


def test_chunks_split_as_keys_come_and_merge_as_they_go() -> None:
    rng = random.Random(3)
    population = rng.sample(range(-100_000, 100_000), 10 * _CHUNK)
    keys, expected = SortedKeys(), set[int]()
    for key in population:
        keys.add(key)
        expected.add(key)
    check(keys, expected)
    assert len(keys.chunks) >= 5  # split, never past 2 * _CHUNK

    for key in population[: 9 * _CHUNK]:  # most of them go, from everywhere
        keys.remove(key)
        expected.remove(key)
        if len(expected) % 97 == 0:
            check(keys, expected)
    check(keys, expected)
    assert len(keys.chunks) <= 2  # merged as they shrank

    for key in sorted(expected):
        keys.remove(key)
    check(keys, set())


def test_it_pickles_and_builds_from_any_order() -> None:
    keys = SortedKeys([5, -3, 12, 5, 0])
    check(keys, {5, -3, 12, 0})

    again = pickle.loads(pickle.dumps(keys))

    check(again, {5, -3, 12, 0})
    again.add(7)
    check(again, {5, -3, 12, 0, 7})
