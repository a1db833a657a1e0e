"""The router's calls to caches (read through, invalidate) and to stores for deletes.
Protobuf stays here."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from trenchcoat.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from trenchcoat.server import MAX_MESSAGE_BYTES
from trenchcoat.v1 import cache_pb2, cache_pb2_grpc, media_pb2, store_pb2, store_pb2_grpc

_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


def _error(exc: grpc.aio.AioRpcError, who: str) -> Exception:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(exc.details())
    if code == grpc.StatusCode.DATA_LOSS:
        return DataLoss(exc.details())
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(exc.details())
    return Unavailable(f"{who}: {code.name}: {exc.details()}")


class CacheClients:
    """Cache id i + 1 is ``endpoints[i]``."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float) -> None:
        self._channels = [grpc.aio.insecure_channel(e, options=_OPTIONS) for e in endpoints]
        self._stubs = [cache_pb2_grpc.CacheServiceStub(c) for c in self._channels]
        self._endpoints = list(endpoints)
        self._timeout = timeout_s

    @property
    def count(self) -> int:
        return len(self._stubs)

    async def read(self, cache_id: int, machine_id: int, logical_volume: int, key: int, alt: int, cookie: int,
                   *, via_cdn: bool) -> tuple[bytes, bool]:
        """(bytes, served from memory) from cache ``cache_id``."""
        if not 1 <= cache_id <= len(self._stubs):
            raise NotFound(f"there is no cache {cache_id} (caches are 1..{len(self._stubs)})")
        request = cache_pb2.CacheReadRequest(
            machine_id=machine_id, via_cdn=via_cdn,
            needle=media_pb2.NeedleLocator(logical_volume=logical_volume, key=key, alternate_key=alt, cookie=cookie))
        try:
            reply = await self._stubs[cache_id - 1].Read(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"cache {cache_id} at {self._endpoints[cache_id - 1]}") from None
        return reply.data, reply.hit

    async def invalidate(self, media_id: int) -> int:
        """Drops every rendition of the photo from every cache; returns entries dropped.
        Raises Unavailable naming the caches that could not be told."""
        dropped, missed = 0, []
        for i, stub in enumerate(self._stubs):
            try:
                reply = await stub.Invalidate(cache_pb2.InvalidateRequest(ref=media_pb2.MediaRef(media_id=media_id)),
                                              timeout=self._timeout)
                dropped += reply.dropped
            except grpc.aio.AioRpcError as exc:
                missed.append(f"cache {i + 1}: {exc.code().name}")
        if missed:
            raise Unavailable(f"could not invalidate on {', '.join(missed)}")
        return dropped

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def delete_needle(address: str, volume_id: int, key: int, cookie: int, timeout_s: float) -> bool:
    """Flags the needle (every rendition shares the key; alt 0 here) deleted on one store."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await store_pb2_grpc.StoreServiceStub(channel).DeleteNeedle(
                store_pb2.DeleteNeedleRequest(volume_id=volume_id, key=key, alternate_key=0, cookie=cookie),
                timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise _error(exc, f"store {address}") from None
    return reply.deleted
