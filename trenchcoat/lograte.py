"""Log lines about one thing at most once per interval.

A fault that every request meets (a damaged needle a popular photo keeps reading, say)
must be said, but said once a while, not at request rate: a flooded log hides everything
else in it. ``OncePerInterval`` decides, for a key naming the thing, whether a line is
due now, and counts the lines it held back so the next one can say how many.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class OncePerInterval(Generic[K]):
    """At most one line per key per ``interval_s``, remembering at most ``capacity`` keys
    (bounded memory however many things go wrong: past it the key logged longest ago is
    forgotten, so it may be said again early)."""

    def __init__(self, interval_s: float, *, capacity: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0 or capacity <= 0:
            raise ValueError("interval_s and capacity must be > 0")
        self.interval_s = interval_s
        self.capacity = capacity
        self._clock = clock
        self._said: OrderedDict[K, list[float | int]] = OrderedDict()
        """key -> [when its last line was said, lines held back since], in the order the
        lines were said: the front is what to forget first."""

    def due(self, key: K) -> int | None:
        """None when a line about ``key`` was said less than ``interval_s`` ago (this one is
        held back and counted); otherwise the line is due now, and this is how many were
        held back since the last (0 the first time)."""
        now = self._clock()
        said = self._said.get(key)
        if said is not None and now - said[0] < self.interval_s:
            said[1] += 1
            return None
        held = int(said[1]) if said is not None else 0
        self._said.pop(key, None)
        while len(self._said) >= self.capacity:
            self._said.popitem(last=False)
        self._said[key] = [now, 0]
        return held

    def __len__(self) -> int:
        """Keys remembered now."""
        return len(self._said)
