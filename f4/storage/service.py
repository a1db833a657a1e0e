"""The F4StorageService servicer: protobuf in, a call on the BlockStore, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from f4.storage.blocks import BlockStore
from trenchcoat.errors import InvalidArgument
from trenchcoat.f4_types import BlockId
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.F4StorageService"

MAX_READ = 64 * 1024 * 1024
"""Largest range one ReadRange returns."""


def block_id(message: f4_pb2.BlockId) -> BlockId:
    return BlockId(message.volume_id, message.stripe, message.index)


def block_message(block: BlockId) -> f4_pb2.BlockId:
    return f4_pb2.BlockId(volume_id=block.volume, stripe=block.stripe, index=block.index)


class StorageServicer(f4_pb2_grpc.F4StorageServiceServicer):
    def __init__(self, blocks: BlockStore, node: str, cell: str = "") -> None:
        self._blocks = blocks
        self._node = node
        self._cell = cell

    async def PutBlock(
        self, request_iterator: AsyncIterator[f4_pb2.PutBlockRequest],
        context: ServicerContext[f4_pb2.PutBlockRequest, f4_pb2.PutBlockResponse],
    ) -> f4_pb2.PutBlockResponse:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument("PutBlock sent no messages") from None
        if not first.HasField("block") or not first.domain:
            raise InvalidArgument("the first PutBlock message names the block and the failure domain to keep it in")
        last_crc = first.crc32c

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal last_crc
            if first.data:
                yield first.data
            async for message in messages:
                last_crc = message.crc32c
                if message.data:
                    yield message.data

        size = await self._blocks.put(block_id(first.block), first.domain, chunks(), lambda: last_crc)
        return f4_pb2.PutBlockResponse(size_bytes=size)

    async def ReadRange(
        self, request: f4_pb2.ReadRangeRequest,
        context: ServicerContext[f4_pb2.ReadRangeRequest, f4_pb2.ReadRangeResponse],
    ) -> f4_pb2.ReadRangeResponse:
        if request.length > MAX_READ:
            raise InvalidArgument(f"a range read returns at most {MAX_READ} bytes, {request.length} were asked for")
        data = await self._blocks.read(block_id(request.block), request.offset, request.length)
        return f4_pb2.ReadRangeResponse(data=data)

    async def DeleteBlock(
        self, request: f4_pb2.DeleteBlockRequest,
        context: ServicerContext[f4_pb2.DeleteBlockRequest, f4_pb2.DeleteBlockResponse],
    ) -> f4_pb2.DeleteBlockResponse:
        if not request.HasField("block"):
            raise InvalidArgument("DeleteBlock names the block")
        return f4_pb2.DeleteBlockResponse(deleted=await self._blocks.delete(block_id(request.block)))

    async def ListBlocks(
        self, request: f4_pb2.ListBlocksRequest,
        context: ServicerContext[f4_pb2.ListBlocksRequest, f4_pb2.ListBlocksResponse],
    ) -> f4_pb2.ListBlocksResponse:
        return f4_pb2.ListBlocksResponse(blocks=[
            f4_pb2.BlockStatus(block=block_message(h.id), node=self._node, rack=h.domain, healthy=not h.damaged,
                               size_bytes=h.size)
            for h in self._blocks.blocks()
        ], domains=self._blocks.domains, cell=self._cell)
