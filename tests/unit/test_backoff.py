"""trenchcoat/backoff.py: exponential, capped, jittered within its bounds."""

from __future__ import annotations

import pytest

from trenchcoat.backoff import Backoff


def test_the_ceiling_doubles_from_the_base_up_to_the_cap():
    backoff = Backoff(base_s=0.5, max_s=5.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.ceiling(10_000) == 5.0  # no overflow after a long outage


@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_the_pause_is_drawn_below_the_ceiling_by_at_most_the_jitter(jitter):
    backoff = Backoff(base_s=1.0, max_s=8.0, jitter=jitter)
    for n in range(1, 8):
        assert backoff.pause(n, rand=lambda: 0.0) == backoff.ceiling(n)
        assert backoff.pause(n, rand=lambda: 1.0) == pytest.approx((1 - jitter) * backoff.ceiling(n))
        assert (1 - jitter) * backoff.ceiling(n) <= backoff.pause(n) <= backoff.ceiling(n)


@pytest.mark.parametrize("kwargs", [
    {"base_s": 0, "max_s": 1}, {"base_s": 2, "max_s": 1}, {"base_s": 1, "max_s": 2, "jitter": 1.5},
])
def test_nonsense_is_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
