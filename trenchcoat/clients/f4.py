"""The clients of f4's storage nodes (``F4StorageService``: what the f4 front, the backoff
nodes and the rebuilders read and write blocks with), its backoff nodes
(``F4BackoffService``), its rebuilder (``F4RebuilderService``), its key store
(``F4KeyStoreService``) and its front (``F4Service``).

Every method takes the node's address and plain values (``BlockId``) and returns plain
values; failures are the typed errors the node raised (``BlockNotFound`` as NOT_FOUND,
``ChecksumMismatch`` as DATA_LOSS, ...) or ``Unavailable`` / ``DeadlineExceeded`` when it
could not be reached in time. Protobuf stays in this module.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import crc32c

from trenchcoat import rpc
from trenchcoat.f4_types import BlockId, BlockInfo, NodeInfo
from trenchcoat.locators import locator
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc, media_pb2

PUT_CHUNK = 1024 * 1024
"""Bytes of a block each PutBlock message carries."""


def _message(block: BlockId) -> f4_pb2.BlockId:
    return f4_pb2.BlockId(volume_id=block.volume, stripe=block.stripe, index=block.index)


class F4StorageClient:
    def __init__(self, pool: rpc.ChannelPool, *, timeout_s: float) -> None:
        self._pool = pool
        self.timeout_s = timeout_s

    def _stub(self, address: str) -> f4_pb2_grpc.F4StorageServiceStub:
        return self._pool.stub(f4_pb2_grpc.F4StorageServiceStub, address)

    async def put_block(self, address: str, block: BlockId, domain: str, data: bytes, *,
                        timeout_s: float | None = None) -> int:
        """Stores ``data`` as ``block`` in the node's ``domain``; durable on return. Returns its size."""
        async def messages() -> AsyncIterator[f4_pb2.PutBlockRequest]:
            yield f4_pb2.PutBlockRequest(block=_message(block), domain=domain, data=data[:PUT_CHUNK])
            view = memoryview(data)
            for start in range(PUT_CHUNK, len(data), PUT_CHUNK):
                yield f4_pb2.PutBlockRequest(data=bytes(view[start:start + PUT_CHUNK]))
            yield f4_pb2.PutBlockRequest(crc32c=crc32c.crc32c(data))

        reply = await rpc.stream_in(self._stub(address).PutBlock, messages(), remote=f"f4 storage {address}",
                                    timeout=timeout_s or self.timeout_s)
        return int(reply.size_bytes)

    async def read_range(self, address: str, block: BlockId, offset: int, length: int, *,
                         timeout_s: float | None = None) -> bytes:
        """Bytes ``[offset, offset + length)`` of the block, verified by the node."""
        reply = await rpc.unary(self._stub(address).ReadRange,
                                f4_pb2.ReadRangeRequest(block=_message(block), offset=offset, length=length),
                                remote=f"f4 storage {address}", timeout=timeout_s or self.timeout_s)
        return bytes(reply.data)

    async def delete_block(self, address: str, block: BlockId) -> bool:
        """Deletes a block the node holds; False when it held none."""
        reply = await rpc.unary(self._stub(address).DeleteBlock, f4_pb2.DeleteBlockRequest(block=_message(block)),
                                remote=f"f4 storage {address}", timeout=self.timeout_s)
        return bool(reply.deleted)

    async def list_blocks(self, address: str, *, timeout_s: float | None = None) -> list[BlockInfo]:
        """The blocks the node holds."""
        return (await self.describe(address, timeout_s=timeout_s)).blocks

    async def describe(self, address: str, *, timeout_s: float | None = None) -> NodeInfo:
        """The node's cell, the failure domains it serves and the blocks it holds."""
        reply = await rpc.unary(self._stub(address).ListBlocks, f4_pb2.ListBlocksRequest(),
                                remote=f"f4 storage {address}", timeout=timeout_s or self.timeout_s)
        return NodeInfo(reply.cell, tuple(reply.domains), [
            BlockInfo(BlockId(b.block.volume_id, b.block.stripe, b.block.index), b.node, b.rack, b.healthy,
                      b.size_bytes) for b in reply.blocks])


class BackoffClient:
    """Calls to a cell's backoff nodes (``F4BackoffService``), spread round robin."""

    def __init__(self, pool: rpc.ChannelPool, addresses: Sequence[str], *, timeout_s: float) -> None:
        self._pool = pool
        self.addresses = list(addresses)
        self.timeout_s = timeout_s
        self._next = itertools.count()

    def __bool__(self) -> bool:
        return bool(self.addresses)

    async def reconstruct(self, block: BlockId, sources: Sequence[str], offset: int, length: int) -> tuple[bytes, int]:
        """Bytes ``[offset, offset + length)`` of the lost ``block``, rebuilt by a backoff
        node from 10 other blocks (``sources[i]``: the node of block i); (data, bytes it read)."""
        address = self.addresses[next(self._next) % len(self.addresses)]
        request = f4_pb2.ReconstructRequest(block=_message(block), offset=offset, length=length, sources=sources)
        reply = await rpc.unary(self._pool.stub(f4_pb2_grpc.F4BackoffServiceStub, address).Reconstruct, request,
                                remote=f"f4 backoff {address}", timeout=self.timeout_s)
        return bytes(reply.data), int(reply.bytes_read)


@dataclass(frozen=True, slots=True)
class RebuildView:
    """One whole-block rebuild, as the rebuilder reports it."""

    rebuild_id: str
    block: BlockId
    done_bytes: int
    total_bytes: int
    finished: bool
    node: str
    domain: str
    reason: str
    error: str
    resumed_bytes: int


@dataclass(frozen=True, slots=True)
class RebuilderView:
    rebuilds: list[RebuildView]
    throttle_bytes_per_s: int
    healthy_blocks: int
    damaged_blocks: int
    lost_blocks: int
    grace_s: float
    last_scan_unix_ms: int = 0
    """When the scan the block counts come from finished (ms since the Unix epoch; 0: none yet)."""
    scan_interval_s: float = 0.0
    """Seconds between the rebuilder's scans."""


class RebuilderClient:
    """Calls to a cell's rebuilder (``F4RebuilderService``)."""

    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s

    def _stub(self) -> f4_pb2_grpc.F4RebuilderServiceStub:
        return self._pool.stub(f4_pb2_grpc.F4RebuilderServiceStub, self.address)

    async def rebuild_block(self, block: BlockId) -> str:
        """Asks for ``block`` to be rebuilt now; returns the rebuild's id."""
        reply = await rpc.unary(self._stub().RebuildBlock, f4_pb2.RebuildBlockRequest(block=_message(block)),
                                remote=f"f4 rebuilder {self.address}", timeout=self.timeout_s)
        return str(reply.rebuild_id)

    async def status(self) -> RebuilderView:
        reply = await rpc.unary(self._stub().RebuildStatus, f4_pb2.RebuildStatusRequest(),
                                remote=f"f4 rebuilder {self.address}", timeout=self.timeout_s)
        return RebuilderView(
            [RebuildView(r.rebuild_id, BlockId(r.block.volume_id, r.block.stripe, r.block.index), r.done_bytes,
                         r.total_bytes, r.finished, r.node, r.domain, r.reason, r.error, r.resumed_bytes)
             for r in reply.rebuilds],
            reply.throttle_bytes_per_s, reply.healthy_blocks, reply.damaged_blocks, reply.lost_blocks, reply.grace_s,
            reply.last_scan_unix_ms, reply.scan_interval_s)


class KeyStoreClient:
    """Calls to a cell's key store (``F4KeyStoreService``)."""

    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s

    def _stub(self) -> f4_pb2_grpc.F4KeyStoreServiceStub:
        return self._pool.stub(f4_pb2_grpc.F4KeyStoreServiceStub, self.address)

    async def create_key(self, key: int, alternate_key: int) -> bytes:
        """The blob's key, made if it has none; FAILED_PRECONDITION if it was discarded."""
        reply = await rpc.unary(self._stub().CreateKey,
                                f4_pb2.CreateKeyRequest(needle=_locator(key, alternate_key)),
                                remote=f"f4 key store {self.address}", timeout=self.timeout_s)
        return bytes(reply.key)

    async def get_key(self, key: int, alternate_key: int) -> bytes:
        """The blob's key; NOT_FOUND when it has none (never made, or discarded)."""
        reply = await rpc.unary(self._stub().GetKey, f4_pb2.GetKeyRequest(needle=_locator(key, alternate_key)),
                                remote=f"f4 key store {self.address}", timeout=self.timeout_s)
        return bytes(reply.key)

    async def discard_key(self, key: int, alternate_key: int | None) -> int:
        """Discards one rendition's key, or every rendition's (None); returns how many were live."""
        request = f4_pb2.DiscardKeyRequest(needle=_locator(key, alternate_key or 0),
                                           every_rendition=alternate_key is None)
        reply = await rpc.unary(self._stub().DiscardKey, request, remote=f"f4 key store {self.address}",
                                timeout=self.timeout_s)
        return int(reply.keys_discarded)


def _locator(key: int, alternate_key: int) -> media_pb2.NeedleLocator:
    return media_pb2.NeedleLocator(key=key, alternate_key=alternate_key)


@dataclass(frozen=True, slots=True)
class EncodedVolume:
    stripes: int
    blobs: int
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class WarmBlob:
    data: bytes
    content_type: str
    reconstructed: bool


class F4Client:
    """Calls to a cell's front (``F4Service``)."""

    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s

    def _stub(self) -> f4_pb2_grpc.F4ServiceStub:
        return self._pool.stub(f4_pb2_grpc.F4ServiceStub, self.address)

    async def encode_volume(self, logical_volume: int, *, timeout_s: float | None = None) -> EncodedVolume:
        """Encodes a sealed hot volume into the cell and checks every blob reads back.
        Unbounded by default: an encode takes as long as the volume needs."""
        reply = await rpc.unary(self._stub().EncodeVolume, f4_pb2.EncodeVolumeRequest(logical_volume=logical_volume),
                                remote=f"f4 {self.address}", timeout=timeout_s)
        return EncodedVolume(reply.stripes, reply.blobs, reply.logical_bytes, reply.stored_bytes)

    async def read_blob(self, needle: NeedleRef) -> WarmBlob:
        request = f4_pb2.ReadBlobRequest(needle=locator(needle))
        reply = await rpc.unary(self._stub().ReadBlob, request, remote=f"f4 {self.address}", timeout=self.timeout_s)
        return WarmBlob(bytes(reply.data), reply.content_type, reply.reconstructed)

    async def delete_blob(self, media_id: int, alternate_key: int | None = None) -> int:
        """Discards the keys of one rendition, or of all; returns how many were live."""
        request = f4_pb2.DeleteBlobRequest(ref=media_pb2.MediaRef(media_id=media_id), alternate_key=alternate_key)
        reply = await rpc.unary(self._stub().DeleteBlob, request, remote=f"f4 {self.address}", timeout=self.timeout_s)
        return int(reply.discarded)

    async def volume_status(self, volume_id: int) -> list[BlockInfo]:
        reply = await rpc.unary(self._stub().VolumeStatus, f4_pb2.F4VolumeStatusRequest(volume_id=volume_id),
                                remote=f"f4 {self.address}", timeout=self.timeout_s)
        return [BlockInfo(BlockId(b.block.volume_id, b.block.stripe, b.block.index), b.node, b.rack, b.healthy,
                          b.size_bytes) for b in reply.blocks]
