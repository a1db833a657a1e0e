"""The StoreService servicer: protobuf in, a call on the VolumeSet, protobuf out.
Typed errors from the domain become status codes in the chassis interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from store import metrics, needle
from store.errors import ChecksumMismatch
from store.volume import Volume
from store.volumes import VolumeSet
from trenchcoat.errors import TrenchcoatError
from trenchcoat.v1 import store_pb2, store_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.StoreService"


@asynccontextmanager
async def counted(op: str) -> AsyncIterator[None]:
    """Counts one needle operation by outcome."""
    try:
        yield
    except TrenchcoatError as exc:
        metrics.OPERATIONS.labels(op, exc.status).inc()
        if isinstance(exc, ChecksumMismatch):
            metrics.CRC_FAILURES.inc()
        raise
    metrics.OPERATIONS.labels(op, "ok").inc()


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
    )


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, volumes: VolumeSet, machine_id: int) -> None:
        self._volumes = volumes
        self._machine_id = machine_id

    async def CreateVolume(self, request, context):  # noqa: N802
        volume = await self._volumes.create(request.volume_id)
        return store_pb2.CreateVolumeResponse(volume=volume_info(volume))

    async def WriteNeedle(self, request, context):  # noqa: N802
        async with counted("write"):
            volume = self._volumes.get(request.volume_id)
            offset, size = await volume.write(request.key, request.alternate_key, request.cookie, request.data)
        return store_pb2.WriteNeedleResponse(offset=offset, stored_size=size)

    async def ReadNeedle(self, request, context):  # noqa: N802
        async with counted("read"):
            data = await self._volumes.get(request.volume_id).read(
                request.key, request.alternate_key, request.cookie
            )
        return store_pb2.ReadNeedleResponse(data=data)

    async def BatchRead(self, request, context):  # noqa: N802
        for i, read in enumerate(request.reads):
            try:
                async with counted("read"):
                    data = await self._volumes.get(read.volume_id).read(read.key, read.alternate_key, read.cookie)
            except TrenchcoatError as exc:
                yield store_pb2.BatchReadResponse(
                    index=i, code=grpc.StatusCode[exc.status].value[0], message=str(exc)
                )
            else:
                yield store_pb2.BatchReadResponse(index=i, data=data)

    async def DeleteNeedle(self, request, context):  # noqa: N802
        async with counted("delete"):
            deleted = await self._volumes.get(request.volume_id).delete(
                request.key, request.alternate_key, request.cookie
            )
        return store_pb2.DeleteNeedleResponse(deleted=deleted)

    async def CompactVolume(self, request, context):  # noqa: N802
        reclaimed, live = await self._volumes.get(request.volume_id).compact()
        return store_pb2.CompactVolumeResponse(reclaimed_bytes=reclaimed, live_needles=live)

    async def ScrubVolume(self, request, context):  # noqa: N802
        checked, damaged = await self._volumes.get(request.volume_id).scrub()
        metrics.CRC_FAILURES.inc(len(damaged))
        return store_pb2.ScrubVolumeResponse(
            needles_checked=checked,
            damaged=[
                store_pb2.DamagedNeedle(key=d.key, alternate_key=d.alternate_key, offset=d.offset, reason=d.reason)
                for d in damaged
            ],
        )

    async def VolumeStatus(self, request, context):  # noqa: N802
        volumes = [self._volumes.get(request.volume_id)] if request.volume_id else self._volumes.all()
        return store_pb2.VolumeStatusResponse(
            machine_id=self._machine_id, volumes=[volume_info(v) for v in volumes]
        )

    async def SetReadOnly(self, request, context):  # noqa: N802
        volume = self._volumes.get(request.volume_id)
        await volume.set_read_only(request.read_only)
        return store_pb2.SetReadOnlyResponse(volume=volume_info(volume))

    async def ExportVolume(self, request, context):  # noqa: N802
        volume = self._volumes.get(request.volume_id)
        async for offset, data, end in volume.export(request.offset, request.chunk_bytes):
            yield store_pb2.ExportVolumeResponse(
                offset=offset, data=data, crc32c=needle.crc32c(data), end_offset=end
            )
