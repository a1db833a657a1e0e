"""The one client of the photo caches (``CacheService``): read through a cache, drop a
photo from every cache. The router reads through it (MediaService.Read by media_id).

Cache ids are 1-based, as photo URLs carry them: cache ``i`` is ``endpoints[i - 1]``.
Failures are the typed errors the cache (or the store behind it) raised. Protobuf stays
in this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from trenchcoat import rpc
from trenchcoat.errors import NoSuchCache, TrenchcoatError, Unavailable
from trenchcoat.locators import locator
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.v1 import cache_pb2, cache_pb2_grpc, media_pb2


@dataclass(frozen=True, slots=True)
class CacheRead:
    """A photo read through a cache."""

    data: bytes
    hit: bool
    """Served from the cache's memory."""
    admitted: bool
    """This read put the photo in the cache's memory."""


class CacheClient:
    def __init__(self, pool: rpc.ChannelPool, endpoints: Sequence[str], *, timeout_s: float) -> None:
        self._pool = pool
        self._endpoints = list(endpoints)
        self.timeout_s = timeout_s

    @property
    def count(self) -> int:
        return len(self._endpoints)

    def _stub(self, cache_id: int) -> cache_pb2_grpc.CacheServiceStub:
        if not 1 <= cache_id <= len(self._endpoints):
            raise NoSuchCache(f"there is no cache {cache_id} (caches are 1..{len(self._endpoints)})")
        return self._pool.stub(cache_pb2_grpc.CacheServiceStub, self._endpoints[cache_id - 1])

    def _remote(self, cache_id: int) -> str:
        return f"cache {cache_id} at {self._endpoints[cache_id - 1]}"

    async def read(self, cache_id: int, machine_id: int, needle: NeedleRef, *, via_cdn: bool,
                   internal: bool = False) -> CacheRead:
        """The photo from cache ``cache_id``, which reads store ``machine_id`` on a miss
        (``internal``: a read by the pipeline itself, never admitted)."""
        stub = self._stub(cache_id)
        request = cache_pb2.CacheReadRequest(
            machine_id=machine_id, via_cdn=via_cdn, internal=internal,
            needle=locator(needle))
        reply = await rpc.unary(stub.Read, request, remote=self._remote(cache_id), timeout=self.timeout_s)
        return CacheRead(reply.data, reply.hit, reply.admitted)

    async def invalidate(self, media_id: int, alternate_key: int | None = None) -> int:
        """Drops the photo (one rendition, or all) from every cache; returns entries dropped.
        Raises Unavailable naming the caches that could not be told."""
        request = cache_pb2.InvalidateRequest(ref=media_pb2.MediaRef(media_id=media_id), alternate_key=alternate_key)
        results = await asyncio.gather(
            *(rpc.unary(self._stub(i).Invalidate, request, remote=self._remote(i), timeout=self.timeout_s)
              for i in range(1, len(self._endpoints) + 1)),
            return_exceptions=True)
        dropped, missed = 0, []
        for result in results:
            if isinstance(result, TrenchcoatError):
                missed.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                dropped += result.dropped
        if missed:
            raise Unavailable(f"could not invalidate on {'; '.join(missed)}")
        return dropped
