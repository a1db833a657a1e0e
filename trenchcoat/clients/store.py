"""The one client of the Haystack store (``StoreService``), used by the cache (reads), the
router (writes, deletes), the directory (probes, status, creation, read-only flips,
repairs) and stores themselves (a repair pulls a peer's export stream).

Every method takes the store's address and plain values (``NeedleRef`` for needles) and
returns plain values; failures are the typed errors the store raised
(``NeedleNotFound``, ``VolumeNotFound``, ``VolumeReadOnly``, ``ChecksumMismatch``, ...)
or, when the store could not be reached in time, ``Unavailable`` / ``DeadlineExceeded``.
Protobuf stays in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence

import grpc

from trenchcoat import rpc
from trenchcoat.errors import (
    DeadlineExceeded,
    Internal,
    TrenchcoatError,
    Unavailable,
    from_wire,
)
from trenchcoat.locators import locator
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob, CatchUp, Damage, ExportChunk, NeedleSummary, PhysicalVolume
from trenchcoat.v1 import store_pb2, store_pb2_grpc

PROBE_BYTES = 64
"""A probe reads this many bytes of each volume (its superblock) from disk."""

_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
"""Numeric status codes (as BatchRead results carry them) to their names."""


class StoreClient:
    """Calls to any store, over the process's channel pool. ``timeout_s`` bounds every
    call unless a method is given its own."""

    def __init__(self, pool: rpc.ChannelPool, *, timeout_s: float) -> None:
        self._pool = pool
        self.timeout_s = timeout_s

    def _stub(self, address: str) -> store_pb2_grpc.StoreServiceStub:
        return self._pool.stub(store_pb2_grpc.StoreServiceStub, address)

    @staticmethod
    def _remote(address: str) -> str:
        return f"store {address}"

    # --- needles -------------------------------------------------------------------------

    async def read(self, address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> Blob:
        """The needle's verified bytes and the content type stored with them."""
        request = store_pb2.ReadNeedleRequest(needle=locator(needle))
        reply = await rpc.unary(self._stub(address).ReadNeedle, request, remote=self._remote(address),
                                timeout=timeout_s or self.timeout_s)
        return Blob(reply.data, reply.content_type)

    async def batch_read(self, address: str, needles: Sequence[NeedleRef], *,
                         timeout_s: float | None = None) -> list[Blob | TrenchcoatError]:
        """Each needle's blob or its own error, in order (1 to 1,000 needles)."""
        request = store_pb2.BatchReadRequest(reads=[store_pb2.ReadNeedleRequest(needle=locator(n)) for n in needles])
        remote = self._remote(address)
        results: list[Blob | TrenchcoatError | None] = [None] * len(needles)
        async for message in rpc.stream_out(self._stub(address).BatchRead, request, remote=remote,
                                            timeout=timeout_s or self.timeout_s):
            for r in message.results:
                if r.code:
                    results[r.index] = from_wire(_STATUS_NAMES.get(r.code, "UNKNOWN"), r.message, r.error, remote)
                else:
                    results[r.index] = Blob(r.data, r.content_type)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise Internal(f"{remote}: BatchRead answered {len(needles) - len(missing)} of {len(needles)} reads")
        return results  # type: ignore[return-value]

    async def write(self, address: str, needle: NeedleRef, data: bytes, *, content_type: str = "",
                    timeout_s: float | None = None) -> None:
        """Returns once the store holds the needle (of ``content_type``, one
        ``trenchcoat.media_types`` lists) durably (fdatasync'd)."""
        request = store_pb2.WriteNeedleRequest(needle=locator(needle), data=data, content_type=content_type)
        await rpc.unary(self._stub(address).WriteNeedle, request, remote=self._remote(address),
                        timeout=timeout_s or self.timeout_s)

    async def write_replicas(self, addresses: Sequence[str], needle: NeedleRef, data: bytes, *,
                             content_type: str = "", timeout_s: float | None = None) -> list[BaseException | None]:
        """``write`` to every store of ``addresses`` at once; for each, in order, None once
        it holds the needle durably, or the error its write ended with. The request is
        encoded once for all of them (the payload is not copied per replica)."""
        request = store_pb2.WriteNeedleRequest(needle=locator(needle), data=data,
                                               content_type=content_type).SerializeToString()
        timeout = timeout_s or self.timeout_s
        return await asyncio.gather(*(
            rpc.unary(self._pool.stub(_EncodedWrite, a).call, request, remote=self._remote(a), timeout=timeout)
            for a in addresses), return_exceptions=True)

    async def delete(self, address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> bool:
        """Flags the needle deleted; False if it already was."""
        request = store_pb2.DeleteNeedleRequest(needle=locator(needle))
        reply = await rpc.unary(self._stub(address).DeleteNeedle, request, remote=self._remote(address),
                                timeout=timeout_s or self.timeout_s)
        return bool(reply.deleted)

    # --- volumes -------------------------------------------------------------------------

    async def status(self, address: str, volume_id: int = 0) -> dict[int, PhysicalVolume]:
        """Every volume of the store (or just ``volume_id``), by id."""
        reply = await rpc.unary(self._stub(address).VolumeStatus, store_pb2.VolumeStatusRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=self.timeout_s)
        return {v.volume_id: physical(v) for v in reply.volumes}

    async def restoring(self, address: str) -> dict[int, tuple[int, int]]:
        """Whole copies of volumes the store is receiving now: volume -> (bytes received, bytes in all)."""
        reply = await rpc.unary(self._stub(address).VolumeStatus, store_pb2.VolumeStatusRequest(volume_id=0),
                                remote=self._remote(address), timeout=self.timeout_s)
        return {r.volume_id: (r.received_bytes, r.total_bytes) for r in reply.restoring}

    async def create(self, address: str, volume_id: int) -> PhysicalVolume:
        reply = await rpc.unary(self._stub(address).CreateVolume, store_pb2.CreateVolumeRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=self.timeout_s)
        return physical(reply.volume)

    async def set_read_only(self, address: str, volume_id: int, read_only: bool) -> PhysicalVolume:
        reply = await rpc.unary(self._stub(address).SetReadOnly,
                                store_pb2.SetReadOnlyRequest(volume_id=volume_id, read_only=read_only),
                                remote=self._remote(address), timeout=self.timeout_s)
        return physical(reply.volume)

    async def compact(self, address: str, volume_id: int, *, timeout_s: float | None = None) -> tuple[int, int]:
        """(bytes reclaimed, live needles) after rewriting the volume without its dead needles."""
        reply = await rpc.unary(self._stub(address).CompactVolume, store_pb2.CompactVolumeRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=timeout_s)
        return reply.reclaimed_bytes, reply.live_needles

    async def scrub(self, address: str, volume_id: int, *,
                    timeout_s: float | None = None) -> tuple[int, list[Damage]]:
        """(needles checked, the ones that failed verification)."""
        reply = await rpc.unary(self._stub(address).ScrubVolume, store_pb2.ScrubVolumeRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=timeout_s)
        return reply.needles_checked, [Damage(d.key, d.alternate_key, d.offset, d.reason) for d in reply.damaged]

    async def export(self, address: str, volume_id: int, *, offset: int = 0, chunk_bytes: int = 0,
                     timeout_s: float | None = None,
                     chunk_timeout_s: float | None = None) -> AsyncGenerator[ExportChunk, None]:
        """The volume file from ``offset`` to its end when the export began, in chunks.
        ``timeout_s`` bounds the whole stream, ``chunk_timeout_s`` the wait for each chunk
        (a copy takes as long as the volume needs; a source that stops sending is
        DeadlineExceeded naming it)."""
        request = store_pb2.ExportVolumeRequest(volume_id=volume_id, offset=offset, chunk_bytes=chunk_bytes)
        stream = rpc.stream_out(self._stub(address).ExportVolume, request, remote=self._remote(address),
                                timeout=timeout_s)
        async with contextlib.aclosing(stream):
            while True:
                try:
                    async with asyncio.timeout(chunk_timeout_s):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceeded(f"{self._remote(address)} sent nothing of volume {volume_id} for "
                                           f"{chunk_timeout_s:g}s") from None
                yield ExportChunk(chunk.offset, chunk.data, chunk.crc32c, chunk.end_offset)

    async def free_volume(self, address: str, volume_id: int) -> bool:
        """Removes a sealed volume's files from the store; False if it held none."""
        reply = await rpc.unary(self._stub(address).FreeVolume, store_pb2.FreeVolumeRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=self.timeout_s)
        return bool(reply.freed)

    async def repair(self, address: str, volume_id: int, source: str, chunk_bytes: int = 0, *,
                     bytes_per_s: int = 0, timeout_s: float | None = None) -> int:
        """Has the store at ``address`` replace its copy with the one at ``source`` (pulled at
        most ``bytes_per_s``, 0: unthrottled); returns the bytes copied. Unbounded by
        default: a copy takes as long as the volume needs."""
        request = store_pb2.RepairVolumeRequest(volume_id=volume_id, source_address=source, chunk_bytes=chunk_bytes,
                                                bytes_per_s=bytes_per_s)
        reply = await rpc.unary(self._stub(address).RepairVolume, request, remote=self._remote(address),
                                timeout=timeout_s)
        return int(reply.copied_bytes)

    async def copy_needle(self, address: str, volume_id: int, key: int, alternate_key: int) -> bytes:
        """The store's verified stored bytes of one needle (what a needle repair writes)."""
        request = store_pb2.CopyNeedleRequest(volume_id=volume_id, key=key, alternate_key=alternate_key)
        reply = await rpc.unary(self._stub(address).CopyNeedle, request, remote=self._remote(address),
                                timeout=self.timeout_s)
        return bytes(reply.raw)

    async def repair_needle(self, address: str, volume_id: int, key: int, alternate_key: int,
                            source: str) -> tuple[bool, int]:
        """Has the store at ``address`` rewrite its copy of a needle from the one at
        ``source``; returns (whether it was damaged, bytes written)."""
        request = store_pb2.RepairNeedleRequest(volume_id=volume_id, key=key, alternate_key=alternate_key,
                                                source_address=source)
        reply = await rpc.unary(self._stub(address).RepairNeedle, request, remote=self._remote(address),
                                timeout=self.timeout_s * 2)
        return bool(reply.was_damaged), int(reply.repaired_bytes)

    async def volume_digest(self, address: str, volume_id: int) -> tuple[bytes, bool]:
        """(the content digest's bucket sums, settled) of the store's copy of a volume."""
        reply = await rpc.unary(self._stub(address).VolumeDigest, store_pb2.VolumeDigestRequest(volume_id=volume_id),
                                remote=self._remote(address), timeout=self.timeout_s)
        return bytes(reply.bucket_sums), bool(reply.settled)

    async def list_needles(self, address: str, volume_id: int, buckets: Sequence[int] = (), *,
                           timeout_s: float | None = None) -> tuple[list[NeedleSummary], int]:
        """The needles of ``buckets`` (all when empty) of the store's copy, and the bytes
        the listing took on the wire."""
        request = store_pb2.ListNeedlesRequest(volume_id=volume_id, buckets=list(buckets))
        out: list[NeedleSummary] = []
        received = 0
        stream = rpc.stream_out(self._stub(address).ListNeedles, request, remote=self._remote(address),
                                timeout=timeout_s)
        async with contextlib.aclosing(stream):
            async for message in stream:
                received += message.ByteSize()
                out.extend(NeedleSummary(n.key, n.alternate_key, n.hash, n.deleted, n.stored_size)
                           for n in message.needles)
        return out, received

    async def copy_needles(self, address: str, volume_id: int, needles: Sequence[tuple[int, int]], *,
                           timeout_s: float | None = None) -> AsyncGenerator[list[bytes], None]:
        """The store's verified stored bytes of ``needles`` ((key, alternate key) each), a
        message's worth at a time; one it lacks or cannot verify is left out."""
        request = store_pb2.CopyNeedlesRequest(
            volume_id=volume_id, needles=[store_pb2.NeedleKey(key=k, alternate_key=a) for k, a in needles])
        stream = rpc.stream_out(self._stub(address).CopyNeedles, request, remote=self._remote(address),
                                timeout=timeout_s)
        async with contextlib.aclosing(stream):
            async for message in stream:
                yield [bytes(raw) for raw in message.raw]

    async def catch_up(self, address: str, volume_id: int, source: str, *,
                       timeout_s: float | None = None) -> CatchUp:
        """Has the store at ``address`` bring its copy up to the one at ``source``, moving
        only what differs. Unbounded by default: it takes as long as the difference needs."""
        reply = await rpc.unary(self._stub(address).CatchUpVolume,
                                store_pb2.CatchUpVolumeRequest(volume_id=volume_id, source_address=source),
                                remote=self._remote(address), timeout=timeout_s)
        return CatchUp(reply.needles_copied, reply.bytes_copied, reply.deletes_applied, reply.conflicts,
                       reply.bytes_received)

    async def probe(self, address: str) -> dict[int, PhysicalVolume]:
        """Is the store fit to serve? Health, then every volume's status, then a read of the
        first bytes of each volume from disk. Returns its volumes; raises Unavailable (or
        the error a step met) when it is not."""
        remote = self._remote(address)
        health = await rpc.health(self._pool, address, remote=remote, timeout=self.timeout_s)
        if health != "SERVING":
            raise Unavailable(f"{remote} is not serving (health {health})")
        volumes = await self.status(address)
        for volume_id in volumes:
            async with contextlib.aclosing(self.export(address, volume_id, chunk_bytes=PROBE_BYTES,
                                                       timeout_s=self.timeout_s)) as chunks:
                async for _ in chunks:
                    break  # leaving the block cancels the stream
        return volumes


class _EncodedWrite:
    """``StoreService.WriteNeedle`` on one channel, taking a request already encoded."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call: grpc.aio.UnaryUnaryMultiCallable[bytes, store_pb2.WriteNeedleResponse] = channel.unary_unary(
            f"/{store_pb2.DESCRIPTOR.services_by_name['StoreService'].full_name}/WriteNeedle",
            request_serializer=None, response_deserializer=store_pb2.WriteNeedleResponse.FromString)


def physical(v: store_pb2.VolumeInfo) -> PhysicalVolume:
    return PhysicalVolume(v.volume_id, v.read_only, v.needles, v.deleted_needles, v.live_bytes,
                          v.file_bytes, v.capacity_bytes, v.content_digest, v.digest_settled)

