"""trenchcoat/lograte.py: one line per key per interval, bounded memory."""

from __future__ import annotations

import pytest

from trenchcoat.lograte import OncePerInterval


def test_a_key_is_due_once_per_interval_and_says_how_many_were_held_back():
    now = [0.0]
    lines = OncePerInterval[str](10.0, clock=lambda: now[0])
    assert lines.due("a") == 0
    assert [lines.due("a") for _ in range(3)] == [None] * 3
    assert lines.due("b") == 0  # each key its own
    now[0] = 9.9
    assert lines.due("a") is None
    now[0] = 10.0
    assert lines.due("a") == 4
    assert lines.due("a") is None
    now[0] = 100.0
    assert lines.due("a") == 1 and lines.due("b") == 0


def test_memory_is_bounded_by_forgetting_the_key_said_longest_ago():
    now = [0.0]
    lines = OncePerInterval[int](60.0, capacity=3, clock=lambda: now[0])
    for key in range(10):
        now[0] += 1
        assert lines.due(key) == 0
        assert len(lines) <= 3
    assert lines.due(9) is None  # remembered
    assert lines.due(0) == 0  # forgotten: may be said again early


@pytest.mark.parametrize("interval_s, capacity", [(0, 1), (1, 0)])
def test_nonsense_bounds_are_refused(interval_s, capacity):
    with pytest.raises(ValueError):
        OncePerInterval(interval_s, capacity=capacity)
