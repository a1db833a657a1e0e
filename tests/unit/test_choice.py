"""trenchcoat/choice.py: of two random candidates the roomier, and writes spread."""

from __future__ import annotations

import collections
import random

import pytest

from trenchcoat.choice import roomier_of_two


def test_the_roomier_of_the_two_drawn_wins_and_the_fullest_is_never_chosen() -> None:
    room = {"full": 0, "half": 50, "empty": 100}
    rng = random.Random(7)
    picks = collections.Counter(roomier_of_two(list(room), rng, room.__getitem__) for _ in range(3000))
    assert picks["full"] == 0  # it loses every draw it is in
    assert picks["empty"] > picks["half"] > 0  # spread, favouring room: about 2/3 and 1/3


def test_one_candidate_is_chosen_and_none_is_refused() -> None:
    assert roomier_of_two(["only"], random.Random(1), lambda _: 0) == "only"
    with pytest.raises(ValueError, match="no candidate"):
        roomier_of_two([], random.Random(1), lambda _: 0)
