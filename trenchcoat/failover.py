"""Calling one of several equivalent processes (directories, routers): the one mechanism of
moving on to the next when one cannot answer.

Only ``Unavailable`` (unreachable, too slow, draining) moves a call to the next target:
any other answer, an error included (NOT_FOUND, INVALID_ARGUMENT), is the answer, since
every target would give it. Two ways to pick where to start: ``sticky`` starts with the
target that answered last (a client following one directory's map), the default spreads
calls over the targets in turn (hydration's BatchStats over the routers).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from trenchcoat.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")


class Failover(Generic[T]):
    def __init__(self, targets: Sequence[T], *, kind: str, names: Sequence[str] | None = None,
                 sticky: bool = False) -> None:
        """``kind`` names the targets in messages ("router"); ``names`` each target (its
        address), in the same order."""
        if not targets:
            raise ValueError(f"no {kind} to call")
        self.targets = list(targets)
        self._kind = kind
        self._names = list(names) if names is not None else [str(t) for t in self.targets]
        self._sticky = sticky
        self._preferred = 0
        self._turn = itertools.count()

    async def call(self, doing: str, attempt: Callable[[T], Awaitable[R]]) -> R:
        """``attempt(target)`` on each target in turn until one answers; Unavailable naming
        every target and the last failure when none does."""
        start = self._preferred if self._sticky else next(self._turn) % len(self.targets)
        last: Unavailable | None = None
        for i in range(len(self.targets)):
            k = (start + i) % len(self.targets)
            try:
                answer = await attempt(self.targets[k])
            except Unavailable as exc:
                last = exc
                continue
            self._preferred = k
            return answer
        raise Unavailable(f"no {self._kind} answered {doing} ({', '.join(self._names)}); retry. The last said: {last}")
