"""Where the next write goes, the one rule the directory's Allocate and every router's own
choice share: of two candidates taken at random, the one with more room (the power of two
choices: writes spread over the volumes, and a fuller one gets fewer, with no shared state
between the routers choosing)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def roomier_of_two(candidates: Sequence[T], rng: random.Random, room: Callable[[T], int]) -> T:
    """Of two random ``candidates``, the one with more ``room`` (the only one when alone)."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    if len(candidates) == 1:
        return candidates[0]
    a, b = rng.sample(list(candidates), 2)
    return a if room(a) >= room(b) else b
