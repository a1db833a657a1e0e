"""The StoreService servicer: protobuf in, a call on the VolumeSet, protobuf out.
Typed errors from the domain become status codes in the chassis interceptor."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from grpc.aio import ServicerContext

from store import metrics
from store.catchup import catch_up
from store.digest import BUCKETS
from store.errors import BadNeedleRequest, ChecksumMismatch, NeedleNotFound
from store.peer import Peers
from store.volume import Volume
from store.volumes import VolumeSet
from trenchcoat import media_types, needle
from trenchcoat.errors import TrenchcoatError, wire_name
from trenchcoat.locators import needle_of
from trenchcoat.v1 import store_pb2, store_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.StoreService"


MAX_BATCH_READS = 1000
BATCH_MESSAGE_BYTES = 1 << 20
"""BatchRead packs results into a message until their data reaches this size."""
LIST_SLICE = 4096
"""Needles a ListNeedles message describes (about 100 KiB)."""
MAX_COPY_NEEDLES = 100_000
BATCH_SLICE = 128
"""BatchRead reads this many needles at a time, so a batch's memory stays bounded."""


class counted:
    """Counts one needle operation by outcome."""

    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        count_result(self.op, exc)


def count_result(op: str, result: object) -> None:
    if isinstance(result, TrenchcoatError):
        metrics.count_operation(op, result.status)
        if isinstance(result, ChecksumMismatch):
            metrics.CRC_FAILURES.inc()
    elif not isinstance(result, BaseException):
        metrics.count_operation(op, "ok")


def volume_info(v: Volume) -> store_pb2.VolumeInfo:
    return store_pb2.VolumeInfo(
        volume_id=v.volume_id,
        read_only=v.read_only,
        needles=v.stats.needles,
        deleted_needles=v.stats.deleted,
        live_bytes=v.stats.live_bytes,
        dead_bytes=v.dead_bytes,
        file_bytes=v.file_bytes,
        capacity_bytes=v.limits.capacity_bytes,
        created_unix_ms=v.superblock.created_ms,
        content_digest=v.digest.value(),
        digest_settled=v.digest_settled,
    )


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, volumes: VolumeSet, machine_id: int, peers: Peers) -> None:
        self._volumes = volumes
        self._machine_id = machine_id
        self._peers = peers

    async def CreateVolume(
        self, request: store_pb2.CreateVolumeRequest,
        context: ServicerContext[store_pb2.CreateVolumeRequest, store_pb2.CreateVolumeResponse],
    ) -> store_pb2.CreateVolumeResponse:
        volume = await self._volumes.create(request.volume_id)
        return store_pb2.CreateVolumeResponse(volume=volume_info(volume))

    async def WriteNeedle(
        self, request: store_pb2.WriteNeedleRequest,
        context: ServicerContext[store_pb2.WriteNeedleRequest, store_pb2.WriteNeedleResponse],
    ) -> store_pb2.WriteNeedleResponse:
        with counted("write"):
            ref = needle_of(request.needle)
            media_type = media_types.of_mime(request.content_type or media_types.OCTET_STREAM.mime)
            offset, size = await self._volumes.get(ref.logical_volume).write(ref, request.data, media_type.code)
        return store_pb2.WriteNeedleResponse(offset=offset, stored_size=size)

    async def ReadNeedle(
        self, request: store_pb2.ReadNeedleRequest,
        context: ServicerContext[store_pb2.ReadNeedleRequest, store_pb2.ReadNeedleResponse],
    ) -> store_pb2.ReadNeedleResponse:
        with counted("read"):
            ref = needle_of(request.needle)
            stored = await self._volumes.get(ref.logical_volume).read(ref)
        return store_pb2.ReadNeedleResponse(data=stored.data, content_type=media_types.of_code(stored.media_type).mime)

    async def BatchRead(
        self, request: store_pb2.BatchReadRequest,
        context: ServicerContext[store_pb2.BatchReadRequest, store_pb2.BatchReadResponse],
    ) -> AsyncIterator[store_pb2.BatchReadResponse]:
        if not 1 <= len(request.reads) <= MAX_BATCH_READS:
            raise BadNeedleRequest(f"a batch reads 1 to {MAX_BATCH_READS} needles, got {len(request.reads)}")
        reads = [needle_of(r.needle, f"reads[{i}].needle") for i, r in enumerate(request.reads)]
        message, size = store_pb2.BatchReadResponse(), 0
        for start in range(0, len(reads), BATCH_SLICE):
            results = await self._volumes.read_many(reads[start:start + BATCH_SLICE])
            for i, result in enumerate(results, start):
                count_result("read", result)
                cost = 0 if isinstance(result, TrenchcoatError) else len(result.data)
                if message.results and size + cost > BATCH_MESSAGE_BYTES:
                    yield message
                    message, size = store_pb2.BatchReadResponse(), 0
                if isinstance(result, TrenchcoatError):
                    code = grpc.StatusCode[result.status].value[0]
                    message.results.add(index=i, code=code, message=str(result), error=wire_name(result))
                else:
                    message.results.add(index=i, data=result.data,
                                        content_type=media_types.of_code(result.media_type).mime)
                size += cost
        yield message

    async def DeleteNeedle(
        self, request: store_pb2.DeleteNeedleRequest,
        context: ServicerContext[store_pb2.DeleteNeedleRequest, store_pb2.DeleteNeedleResponse],
    ) -> store_pb2.DeleteNeedleResponse:
        with counted("delete"):
            ref = needle_of(request.needle)
            deleted = await self._volumes.get(ref.logical_volume).delete(ref)
        return store_pb2.DeleteNeedleResponse(deleted=deleted)

    async def CompactVolume(
        self, request: store_pb2.CompactVolumeRequest,
        context: ServicerContext[store_pb2.CompactVolumeRequest, store_pb2.CompactVolumeResponse],
    ) -> store_pb2.CompactVolumeResponse:
        reclaimed, live = await self._volumes.get(request.volume_id).compact()
        return store_pb2.CompactVolumeResponse(reclaimed_bytes=reclaimed, live_needles=live)

    async def ScrubVolume(
        self, request: store_pb2.ScrubVolumeRequest,
        context: ServicerContext[store_pb2.ScrubVolumeRequest, store_pb2.ScrubVolumeResponse],
    ) -> store_pb2.ScrubVolumeResponse:
        checked, damaged = await self._volumes.get(request.volume_id).scrub()
        metrics.CRC_FAILURES.inc(len(damaged))
        return store_pb2.ScrubVolumeResponse(
            needles_checked=checked,
            damaged=[
                store_pb2.DamagedNeedle(key=d.key, alternate_key=d.alternate_key, offset=d.offset, reason=d.reason)
                for d in damaged
            ],
        )

    async def VolumeStatus(
        self, request: store_pb2.VolumeStatusRequest,
        context: ServicerContext[store_pb2.VolumeStatusRequest, store_pb2.VolumeStatusResponse],
    ) -> store_pb2.VolumeStatusResponse:
        volumes = [self._volumes.get(request.volume_id)] if request.volume_id else self._volumes.all()
        return store_pb2.VolumeStatusResponse(
            machine_id=self._machine_id, volumes=[volume_info(v) for v in volumes],
            restoring=[store_pb2.RestoreProgress(volume_id=v, received_bytes=got, total_bytes=total)
                       for v, (got, total) in sorted(self._volumes.restoring.items())],
        )

    async def SetReadOnly(
        self, request: store_pb2.SetReadOnlyRequest,
        context: ServicerContext[store_pb2.SetReadOnlyRequest, store_pb2.SetReadOnlyResponse],
    ) -> store_pb2.SetReadOnlyResponse:
        volume = self._volumes.get(request.volume_id)
        await volume.set_read_only(request.read_only)
        return store_pb2.SetReadOnlyResponse(volume=volume_info(volume))

    async def FreeVolume(
        self, request: store_pb2.FreeVolumeRequest,
        context: ServicerContext[store_pb2.FreeVolumeRequest, store_pb2.FreeVolumeResponse],
    ) -> store_pb2.FreeVolumeResponse:
        freed = await self._volumes.free(request.volume_id)
        return store_pb2.FreeVolumeResponse(freed=freed is not None, freed_bytes=freed or 0)

    async def ExportVolume(
        self, request: store_pb2.ExportVolumeRequest,
        context: ServicerContext[store_pb2.ExportVolumeRequest, store_pb2.ExportVolumeResponse],
    ) -> AsyncIterator[store_pb2.ExportVolumeResponse]:
        volume = self._volumes.get(request.volume_id)
        async for offset, data, end in volume.export(request.offset, request.chunk_bytes):
            yield store_pb2.ExportVolumeResponse(
                offset=offset, data=data, crc32c=needle.crc32c(data), end_offset=end
            )

    async def RepairVolume(
        self, request: store_pb2.RepairVolumeRequest,
        context: ServicerContext[store_pb2.RepairVolumeRequest, store_pb2.RepairVolumeResponse],
    ) -> store_pb2.RepairVolumeResponse:
        if not request.source_address:
            raise BadNeedleRequest("source_address is required (host:port of a store with a good copy)")
        # A refused copy stops reading the source's stream at once (the call is cancelled).
        async with contextlib.aclosing(self._peers.export(request.source_address, request.volume_id,
                                                          request.chunk_bytes)) as chunks:
            volume, copied = await self._volumes.restore(request.volume_id, chunks, bytes_per_s=request.bytes_per_s)
        return store_pb2.RepairVolumeResponse(volume=volume_info(volume), copied_bytes=copied)

    async def CopyNeedle(
        self, request: store_pb2.CopyNeedleRequest,
        context: ServicerContext[store_pb2.CopyNeedleRequest, store_pb2.CopyNeedleResponse],
    ) -> store_pb2.CopyNeedleResponse:
        raw = await self._volumes.get(request.volume_id).copy_needle(request.key, request.alternate_key)
        return store_pb2.CopyNeedleResponse(raw=raw)

    async def RepairNeedle(
        self, request: store_pb2.RepairNeedleRequest,
        context: ServicerContext[store_pb2.RepairNeedleRequest, store_pb2.RepairNeedleResponse],
    ) -> store_pb2.RepairNeedleResponse:
        if not request.source_address:
            raise BadNeedleRequest("source_address is required (host:port of a store whose copy of the needle is healthy)")
        volume = self._volumes.get(request.volume_id)
        try:
            raw = await self._peers.copy_needle(request.source_address, request.volume_id, request.key,
                                                request.alternate_key)
            was_damaged = await volume.replace_needle(raw)
        except TrenchcoatError as exc:
            metrics.NEEDLE_REPAIRS.labels(exc.status.lower()).inc()
            raise
        metrics.NEEDLE_REPAIRS.labels("repaired" if was_damaged else "healthy").inc()
        if was_damaged:
            metrics.NEEDLE_REPAIR_BYTES.inc(len(raw))
        return store_pb2.RepairNeedleResponse(repaired_bytes=len(raw) if was_damaged else 0, was_damaged=was_damaged)

    async def VolumeDigest(
        self, request: store_pb2.VolumeDigestRequest,
        context: ServicerContext[store_pb2.VolumeDigestRequest, store_pb2.VolumeDigestResponse],
    ) -> store_pb2.VolumeDigestResponse:
        volume = self._volumes.get(request.volume_id)
        return store_pb2.VolumeDigestResponse(bucket_sums=volume.digest.to_bytes(), settled=volume.digest_settled)

    async def ListNeedles(
        self, request: store_pb2.ListNeedlesRequest,
        context: ServicerContext[store_pb2.ListNeedlesRequest, store_pb2.ListNeedlesResponse],
    ) -> AsyncIterator[store_pb2.ListNeedlesResponse]:
        bad = [b for b in request.buckets if b >= BUCKETS]
        if bad:
            raise BadNeedleRequest(f"buckets are 0..{BUCKETS - 1}, got {bad[0]}")
        listed = await self._volumes.get(request.volume_id).list_needles(set(request.buckets))
        for start in range(0, len(listed), LIST_SLICE):
            yield store_pb2.ListNeedlesResponse(needles=[
                store_pb2.NeedleSummary(key=n.key, alternate_key=n.alternate_key, hash=n.hash, deleted=n.deleted,
                                        stored_size=n.stored_size) for n in listed[start:start + LIST_SLICE]])

    async def CopyNeedles(
        self, request: store_pb2.CopyNeedlesRequest,
        context: ServicerContext[store_pb2.CopyNeedlesRequest, store_pb2.CopyNeedlesResponse],
    ) -> AsyncIterator[store_pb2.CopyNeedlesResponse]:
        if len(request.needles) > MAX_COPY_NEEDLES:
            raise BadNeedleRequest(f"a copy sends at most {MAX_COPY_NEEDLES} needles, got {len(request.needles)}")
        volume = self._volumes.get(request.volume_id)
        message, size = store_pb2.CopyNeedlesResponse(), 0
        for wanted in request.needles:
            try:
                raw = await volume.copy_needle(wanted.key, wanted.alternate_key)
            except (NeedleNotFound, ChecksumMismatch):
                continue  # left out: the caller copies what verifies
            if message.raw and size + len(raw) > BATCH_MESSAGE_BYTES:
                yield message
                message, size = store_pb2.CopyNeedlesResponse(), 0
            message.raw.append(raw)
            size += len(raw)
        yield message

    async def CatchUpVolume(
        self, request: store_pb2.CatchUpVolumeRequest,
        context: ServicerContext[store_pb2.CatchUpVolumeRequest, store_pb2.CatchUpVolumeResponse],
    ) -> store_pb2.CatchUpVolumeResponse:
        if not request.source_address:
            raise BadNeedleRequest("source_address is required (host:port of the store to catch up with)")
        done = await catch_up(self._volumes.get(request.volume_id), self._peers, request.source_address)
        metrics.CATCHUP_NEEDLES.inc(done.needles_copied)
        metrics.CATCHUP_BYTES.inc(done.bytes_received)
        return store_pb2.CatchUpVolumeResponse(
            needles_copied=done.needles_copied, bytes_copied=done.bytes_copied, deletes_applied=done.deletes_applied,
            conflicts=done.conflicts, bytes_received=done.bytes_received)
