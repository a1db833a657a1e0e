"""The media pipeline as the feed sees it: the routers' MediaService, asked in turn until
one answers (a router that is down or slow costs one timeout, not the request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from trenchcoat.clients.media import Media, MediaClient, StatResult
from trenchcoat.failover import Failover

T = TypeVar("T")


class Routers:
    def __init__(self, clients: Sequence[MediaClient]) -> None:
        self._routers = Failover(clients, kind="router", names=[c.address for c in clients])

    async def _ask(self, what: str, call: Callable[[MediaClient], Awaitable[T]]) -> T:
        return await self._routers.call(what, call)

    async def stat(self, media_id: int) -> Media:
        return await self._ask("Stat", lambda c: c.stat(media_id))

    async def batch_stat(self, media_ids: Sequence[int]) -> list[StatResult]:
        return await self._ask("BatchStat", lambda c: c.batch_stat(media_ids))

    async def delete(self, media_id: int) -> bool:
        return await self._ask("Delete", lambda c: c.delete(media_id))
