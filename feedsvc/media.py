"""The media pipeline as the feed sees it: the routers' MediaService, asked in turn until
one answers (a router that is down or slow costs one timeout, not the request)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from trenchcoat.clients.media import Media, MediaClient, StatResult
from trenchcoat.errors import Unavailable

T = TypeVar("T")


class Routers:
    def __init__(self, clients: Sequence[MediaClient]) -> None:
        if not clients:
            raise ValueError("no router endpoints")
        self._clients = list(clients)
        self._turn = itertools.count()

    async def _ask(self, what: str, call: Callable[[MediaClient], Awaitable[T]]) -> T:
        last: Unavailable | None = None
        start = next(self._turn)
        for k in range(len(self._clients)):
            try:
                return await call(self._clients[(start + k) % len(self._clients)])
            except Unavailable as exc:
                last = exc
        raise Unavailable(f"no router answered {what}; retry ({last})")

    async def stat(self, media_id: int) -> Media:
        return await self._ask("Stat", lambda c: c.stat(media_id))

    async def batch_stat(self, media_ids: Sequence[int]) -> list[StatResult]:
        return await self._ask("BatchStat", lambda c: c.batch_stat(media_ids))

    async def delete(self, media_id: int) -> bool:
        return await self._ask("Delete", lambda c: c.delete(media_id))
