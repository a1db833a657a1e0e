"""The F4Service servicer: protobuf in, a call on the Front, protobuf out."""

from __future__ import annotations

from grpc.aio import ServicerContext

from f4.front import Front
from trenchcoat import media_types
from trenchcoat.errors import InvalidArgument
from trenchcoat.locators import needle_of
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.F4Service"


class F4Servicer(f4_pb2_grpc.F4ServiceServicer):
    def __init__(self, front: Front) -> None:
        self._front = front

    async def EncodeVolume(
        self, request: f4_pb2.EncodeVolumeRequest,
        context: ServicerContext[f4_pb2.EncodeVolumeRequest, f4_pb2.EncodeVolumeResponse],
    ) -> f4_pb2.EncodeVolumeResponse:
        if not request.logical_volume:
            raise InvalidArgument("logical_volume is required")
        done = await self._front.encode(request.logical_volume)
        return f4_pb2.EncodeVolumeResponse(stripes=done.stripes, blobs=done.blobs, logical_bytes=done.logical_bytes,
                                           stored_bytes=done.stored_bytes)

    async def ReadBlob(
        self, request: f4_pb2.ReadBlobRequest,
        context: ServicerContext[f4_pb2.ReadBlobRequest, f4_pb2.ReadBlobResponse],
    ) -> f4_pb2.ReadBlobResponse:
        got = await self._front.read(needle_of(request.needle))
        return f4_pb2.ReadBlobResponse(data=got.data, reconstructed=got.reconstructed,
                                       content_type=media_types.of_code(got.media_type).mime)

    async def DeleteBlob(
        self, request: f4_pb2.DeleteBlobRequest,
        context: ServicerContext[f4_pb2.DeleteBlobRequest, f4_pb2.DeleteBlobResponse],
    ) -> f4_pb2.DeleteBlobResponse:
        alt = request.alternate_key if request.HasField("alternate_key") else None
        return f4_pb2.DeleteBlobResponse(discarded=await self._front.delete(request.ref.media_id, alt))

    async def VolumeStatus(
        self, request: f4_pb2.F4VolumeStatusRequest,
        context: ServicerContext[f4_pb2.F4VolumeStatusRequest, f4_pb2.F4VolumeStatusResponse],
    ) -> f4_pb2.F4VolumeStatusResponse:
        blocks = await self._front.status(request.volume_id)
        return f4_pb2.F4VolumeStatusResponse(blocks=[
            f4_pb2.BlockStatus(block=f4_pb2.BlockId(volume_id=b.block.volume, stripe=b.block.stripe,
                                                    index=b.block.index),
                               node=b.node, rack=b.domain, healthy=b.healthy, size_bytes=b.size)
            for b in blocks
        ])
