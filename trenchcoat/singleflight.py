"""One call per key at a time: callers asking for a key while its call is under way wait
for that call's answer instead of making their own (a volume located, a manifest
loaded). A caller that gives up does not cancel the call for the others."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(call())
            running.add_done_callback(functools.partial(self._done, key))
        return await asyncio.shield(running)

    def running(self, key: K) -> bool:
        """Whether a call for ``key`` is under way (a caller now would share it)."""
        return key in self._running

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        self._running.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have given up
