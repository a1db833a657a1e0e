"""The CacheService servicer: protobuf in, a call on the PhotoCache, protobuf out."""

from __future__ import annotations

from grpc.aio import ServicerContext

from cache.photos import PhotoCache
from trenchcoat.errors import InvalidArgument
from trenchcoat.locators import needle_of
from trenchcoat.v1 import cache_pb2, cache_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.CacheService"


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    def __init__(self, cache: PhotoCache) -> None:
        self._cache = cache

    async def Read(
        self, request: cache_pb2.CacheReadRequest,
        context: ServicerContext[cache_pb2.CacheReadRequest, cache_pb2.CacheReadResponse],
    ) -> cache_pb2.CacheReadResponse:
        if not request.machine_id:
            raise InvalidArgument("machine_id is required")
        needle = needle_of(request.needle)
        served = await self._cache.read(request.machine_id, needle, via_cdn=request.via_cdn,
                                        internal=request.internal)
        return cache_pb2.CacheReadResponse(data=served.data, hit=served.hit, admitted=served.admitted)

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest,
        context: ServicerContext[cache_pb2.InvalidateRequest, cache_pb2.InvalidateResponse],
    ) -> cache_pb2.InvalidateResponse:
        alt = request.alternate_key if request.HasField("alternate_key") else None
        return cache_pb2.InvalidateResponse(dropped=self._cache.invalidate(request.ref.media_id, alt))

    async def Stats(
        self, request: cache_pb2.CacheStatsRequest,
        context: ServicerContext[cache_pb2.CacheStatsRequest, cache_pb2.CacheStatsResponse],
    ) -> cache_pb2.CacheStatsResponse:
        c = self._cache
        return cache_pb2.CacheStatsResponse(
            bytes=c.lru.bytes, capacity_bytes=c.lru.capacity_bytes, entries=len(c.lru), hits=c.hits,
            misses=c.misses, lease_grants=c.leases.grants, lease_waits=c.leases.waits,
        )
