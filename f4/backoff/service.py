"""The F4BackoffService servicer: protobuf in, ``f4.reconstruct`` over the cell's storage
nodes, protobuf out."""

from __future__ import annotations

from grpc.aio import ServicerContext

from f4.reconstruct import reconstruct
from f4.storage.service import MAX_READ, block_id
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.errors import InvalidArgument
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.F4BackoffService"


class BackoffServicer(f4_pb2_grpc.F4BackoffServiceServicer):
    def __init__(self, storage: F4StorageClient) -> None:
        self._storage = storage

    async def Reconstruct(
        self, request: f4_pb2.ReconstructRequest,
        context: ServicerContext[f4_pb2.ReconstructRequest, f4_pb2.ReconstructResponse],
    ) -> f4_pb2.ReconstructResponse:
        if not request.HasField("block"):
            raise InvalidArgument("Reconstruct names the lost block")
        if request.length > MAX_READ // 10:
            raise InvalidArgument(f"a reconstruction rebuilds at most {MAX_READ // 10} bytes (it reads 10 times "
                                  f"that); {request.length} were asked for")
        done = await reconstruct(self._storage, block_id(request.block), list(request.sources), request.offset,
                                 request.length)
        return f4_pb2.ReconstructResponse(data=done.data, bytes_read=done.bytes_read)
