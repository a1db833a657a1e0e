"""Exponential backoff with jitter, capped: how long to wait before trying again after
failures in a row. Written once here for every loop that retries (a background worker's
failed tick, a job, a reconnect); the jitter spreads the retries of many processes that
failed together (a dependency came back) so they do not all return at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

MAX_DOUBLINGS = 64
"""Past this many failures the pause stopped growing long ago (and 2 ** n stays a float)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The pause after ``n`` failures in a row is drawn from ``[(1 - jitter) * c, c]``,
    where the ceiling ``c = min(max_s, base_s * 2 ** (n - 1))``."""

    base_s: float
    """Pause ceiling after the first failure; it doubles with each further one."""
    max_s: float
    """Longest pause, however many failures."""
    jitter: float = 0.5
    """Share of the ceiling drawn at random: 0 waits exactly the ceiling, 1 anything up to
    it ("full jitter")."""

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.max_s) or not (0 <= self.jitter <= 1):
            raise ValueError(f"a backoff needs 0 < base_s <= max_s and 0 <= jitter <= 1, not {self}")

    def ceiling(self, failures: int) -> float:
        """The longest pause after ``failures`` failures in a row (at least 1)."""
        return min(self.max_s, self.base_s * 2.0 ** min(max(failures - 1, 0), MAX_DOUBLINGS))

    def pause(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` failures in a row (at least 1)."""
        return self.ceiling(failures) * (1 - self.jitter * rand())
