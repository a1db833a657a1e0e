"""The one place a store calls another store: pulling a volume's bytes for a repair.
Protobuf stays here; the repair itself (``VolumeSet.restore``) sees plain tuples."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.server import MAX_MESSAGE_BYTES
from trenchcoat.v1 import store_pb2, store_pb2_grpc


async def export_chunks(address: str, volume_id: int, chunk_bytes: int) -> AsyncIterator[tuple[int, bytes, int, int]]:
    """(offset, data, crc32c, end) chunks of a volume on the store at ``address``."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        request = store_pb2.ExportVolumeRequest(volume_id=volume_id, offset=0, chunk_bytes=chunk_bytes)
        try:
            async for chunk in stub.ExportVolume(request):
                yield chunk.offset, chunk.data, chunk.crc32c, chunk.end_offset
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise FailedPrecondition(f"source store {address} cannot export volume {volume_id}: "
                                         f"{exc.details()}") from None
            raise Unavailable(f"source store {address}: {exc.code().name}: {exc.details()}") from None
