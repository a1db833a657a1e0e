"""One f4 cell seen from its front: encoding a volume's blobs into stripes on the cell's
storage nodes, and reading a blob back, rebuilding it online when a data block fails.

**Encoding.** Blobs are sealed with their own key (``f4.crypto``, keys from the key
store; a blob whose media was deleted gets none and is left out) and appended to the current stripe's stream; a blob never straddles two stripes.
A full stripe is cut into rows (``f4.layout``), each row's parity computed
(``f4.codec``), and its 14 blocks put on 14 failure domains at once, each durable before
its put returns. Puts are idempotent (a put replaces the block), so an encode cut short
is simply run again. The manifest is written last, to every node of the first stripe;
a volume without a manifest is not encoded.

**Reading.** A blob's extents are range reads of data blocks (one or two for a blob no
larger than a cell). When a data block's read fails (its node is down or slow past the
deadline, the block is missing, or its chunk fails its CRC) that extent is rebuilt from
the same byte range of 10 other blocks of the stripe, read in parallel (a read slower
than ``hedge_s`` counts as failed: a slow node costs a reconstruction, not the reader's
patience); a block that
fails then is replaced by the next. Fewer than 10 answering is UNAVAILABLE naming the
stripe: never wrong bytes, which the blob's authentication tag and plaintext CRC32C
guarantee end to end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

import crc32c
from prometheus_client import Counter

from f4 import codec, crypto
from f4.layout import Extent, Geometry, place
from f4.manifest import MANIFEST_STRIPE, Blob, Manifest, Stripe
from trenchcoat.errors import (
    DataLoss,
    FailedPrecondition,
    NeedleNotFound,
    NotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.f4_client import F4StorageClient, KeyStoreClient
from trenchcoat.f4_types import BlockId

log = logging.getLogger(__name__)

KEY_BATCH = 32
"""Blobs whose keys an encode asks the key store for at once."""
KEY_BATCH_BYTES = 16 * 1024 * 1024
"""Most bytes of blobs an encode holds while their keys are asked for."""

RECONSTRUCTIONS = Counter("trenchcoat_f4_reconstructions_total",
                          "Extents of blobs rebuilt online from 10 other blocks, by outcome.", ["outcome"])
RECONSTRUCT_BYTES = Counter("trenchcoat_f4_reconstruct_bytes_read_total",
                            "Bytes read from surviving blocks to rebuild extents online.")


@dataclass(frozen=True, slots=True)
class Node:
    """A storage node and the failure domains it keeps blocks for."""

    address: str
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlainBlob:
    """A live needle of a hot volume, as an encode takes it."""

    key: int
    alternate_key: int
    cookie: int
    media_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WarmRead:
    data: bytes
    media_type: int
    reconstructed: bool


class StripeUnavailable(Unavailable):
    """Raised when fewer than 10 blocks of a stripe answer: the blob cannot be rebuilt now."""


class Cell:
    def __init__(self, storage: F4StorageClient, keys: KeyStoreClient, nodes: Sequence[Node],
                 geometry: Geometry, *, hedge_s: float | None = None) -> None:
        self._storage = storage
        self._keys = keys
        self.nodes = list(nodes)
        """The storage nodes new stripes are placed on (reads go where the manifest says)."""
        self.geometry = geometry
        self.hedge_s = hedge_s
        """How long a data block's read may take before the extent is rebuilt from others instead."""

    def domains(self) -> dict[str, list[str]]:
        """Failure domain -> the addresses of the nodes serving it."""
        domains: dict[str, list[str]] = {}
        for node in self.nodes:
            for domain in node.domains:
                domains.setdefault(domain, []).append(node.address)
        return domains

    # --- encoding --------------------------------------------------------------------

    async def encode(self, volume_id: int, blobs: AsyncIterable[PlainBlob]) -> Manifest:
        """Writes ``blobs`` as the stripes of ``volume_id`` and its manifest; returns the
        manifest. A full stripe's blocks are put while the next one is being filled (one
        stripe in flight at most)."""
        manifest = Manifest(volume_id, self.geometry)
        stream = bytearray()
        pending: list[Blob] = []
        capacity = self.geometry.stripe_capacity
        number = 0
        writing: asyncio.Task[None] | None = None
        try:
            async for plain, blob_key in self._keyed(blobs):
                if blob_key is None:  # deleted (its key discarded) since the volume was sealed
                    log.info("needle %#x/%d of volume %d is deleted: not encoded", plain.key, plain.alternate_key,
                             volume_id)
                    continue
                sealed = crypto.seal(blob_key, plain.data, key=plain.key, alternate_key=plain.alternate_key)
                if len(sealed) > capacity:
                    raise Unavailable(f"needle {plain.key:#x}/{plain.alternate_key} ({len(sealed)} bytes sealed) "
                                      f"does not fit a stripe ({capacity} bytes); raise f4 rows or cell_bytes")
                if len(stream) + len(sealed) > capacity:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(self._write_stripe(manifest, number, bytes(stream), pending))
                    number += 1
                    stream.clear()
                    pending = []
                pending.append(Blob(plain.key, plain.alternate_key, plain.cookie, plain.media_type, number,
                                    len(stream), len(sealed), crc32c.crc32c(plain.data), len(plain.data)))
                stream += sealed
            if writing is not None:
                await writing
                writing = None
            if stream:
                await self._write_stripe(manifest, number, bytes(stream), pending)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
        await self._write_manifest(manifest)
        return manifest

    async def _keyed(self, blobs: AsyncIterable[PlainBlob]) -> AsyncIterator[tuple[PlainBlob, bytes | None]]:
        """Each blob with its key (None: deleted), in order; the keys of up to
        KEY_BATCH blobs (at most KEY_BATCH_BYTES of them held) are asked for at once, so
        the key store's round trips overlap instead of adding up."""
        batch: list[PlainBlob] = []
        held = 0

        async def keys_of(batch: list[PlainBlob]) -> list[bytes | None]:
            async def one(plain: PlainBlob) -> bytes | None:
                try:
                    return await self._keys.create_key(plain.key, plain.alternate_key)
                except FailedPrecondition:
                    return None

            return await asyncio.gather(*(one(p) for p in batch))

        async for plain in blobs:
            batch.append(plain)
            held += len(plain.data)
            if len(batch) >= KEY_BATCH or held >= KEY_BATCH_BYTES:
                for item in zip(batch, await keys_of(batch), strict=True):
                    yield item
                batch, held = [], 0
        if batch:
            for item in zip(batch, await keys_of(batch), strict=True):
                yield item

    async def _write_stripe(self, manifest: Manifest, number: int, stream: bytes, blobs: list[Blob]) -> None:
        placement = place(self.domains())
        blocks = self.geometry.encode(stream)
        await asyncio.gather(*(
            self._storage.put_block(node, BlockId(manifest.volume_id, number, index), domain, blocks[index])
            for index, (domain, node) in enumerate(placement)))
        manifest.stripes.append(Stripe(number, len(stream), tuple((node, domain) for domain, node in placement)))
        for blob in blobs:
            manifest.blobs[blob.key, blob.alternate_key] = blob

    async def _write_manifest(self, manifest: Manifest) -> None:
        if manifest.stripes:
            failed = [r for r in await self._put_manifest(manifest) if r is not None]
            if failed:
                raise failed[0]

    async def rewrite_manifest(self, manifest: Manifest) -> None:
        """Writes the manifest again, one version up, to every node of its first stripe
        that answers (at least one must)."""
        manifest.version += 1
        results = await self._put_manifest(manifest)
        failed = [r for r in results if r is not None]
        if len(failed) == len(results):
            raise Unavailable(f"the manifest of volume {manifest.volume_id} could be written to no node: {failed[0]}")

    async def _put_manifest(self, manifest: Manifest) -> list[TrenchcoatError | None]:
        """Puts the manifest as a block on every node of the first stripe; each put's error, or None."""
        raw = manifest.to_bytes()

        async def put(index: int, node: str, domain: str) -> TrenchcoatError | None:
            try:
                await self._storage.put_block(node, BlockId(manifest.volume_id, MANIFEST_STRIPE, index), domain, raw)
            except TrenchcoatError as exc:
                return exc
            return None

        return await asyncio.gather(*(put(i, node, domain) for i, (node, domain) in enumerate(manifest.stripes[0].blocks)))

    async def load_manifest(self, volume_id: int) -> Manifest:
        """The volume's manifest: the highest version any node that answers holds."""
        failures: list[str] = []

        async def from_node(node: Node) -> Manifest | None:
            try:
                for info in await self._storage.list_blocks(node.address):
                    if info.block.volume == volume_id and info.block.stripe == MANIFEST_STRIPE:
                        raw = await self._storage.read_range(node.address, info.block, 0, info.size)
                        return Manifest.from_bytes(raw)
            except TrenchcoatError as exc:
                failures.append(f"{node.address}: {exc}")
            return None

        found = [m for m in await asyncio.gather(*(from_node(n) for n in self.nodes)) if m is not None]
        if not found:
            raise NotFound(f"volume {volume_id} is not encoded in this cell (no manifest found"
                           f"{'; ' + '; '.join(failures) if failures else ''})")
        return max(found, key=lambda m: m.version)

    # --- reading ---------------------------------------------------------------------

    async def read(self, manifest: Manifest, key: int, alternate_key: int, cookie: int) -> WarmRead:
        """A blob's plaintext, verified; rebuilt online where a data block fails."""
        blob = manifest.blobs.get((key, alternate_key))
        if blob is None or blob.cookie != cookie:
            raise NeedleNotFound(f"volume {manifest.volume_id} holds no needle {key:#x}/{alternate_key}")
        try:
            blob_key = await self._keys.get_key(key, alternate_key)
        except NotFound:
            raise NeedleNotFound(f"needle {key:#x}/{alternate_key} was deleted") from None
        stripe = manifest.stripes[blob.stripe]
        extents = self.geometry.extents(stripe.data_bytes, blob.offset, blob.sealed_length)
        pieces = await asyncio.gather(*(self._extent(manifest.volume_id, stripe, e) for e in extents))
        sealed = b"".join(data for data, _ in pieces)
        plain = crypto.open_sealed(blob_key, sealed, key=key, alternate_key=alternate_key)
        if crc32c.crc32c(plain) != blob.crc32c:
            raise DataLoss(f"needle {key:#x}/{alternate_key} of warm volume {manifest.volume_id} "
                           "fails its checksum after decryption")
        return WarmRead(plain, blob.media_type, any(rebuilt for _, rebuilt in pieces))

    async def _extent(self, volume_id: int, stripe: Stripe, extent: Extent) -> tuple[bytes, bool]:
        node, _ = stripe.blocks[extent.block]
        block = BlockId(volume_id, stripe.number, extent.block)
        try:
            return await self._storage.read_range(node, block, extent.offset, extent.length,
                                                  timeout_s=self.hedge_s), False
        except TrenchcoatError as exc:
            log.debug("%s on %s failed (%s); rebuilding bytes %d+%d from the stripe",
                        block, node, exc, extent.offset, extent.length)
        return await self.reconstruct(volume_id, stripe, extent), True

    async def reconstruct(self, volume_id: int, stripe: Stripe, extent: Extent) -> bytes:
        """The extent's bytes rebuilt from the same range of 10 other blocks of the stripe."""
        candidates = [i for i in range(codec.N) if i != extent.block]
        ranges: dict[int, bytes] = {}
        failures: list[str] = []

        async def fetch(index: int) -> None:
            node, _ = stripe.blocks[index]
            try:
                ranges[index] = await self._storage.read_range(
                    node, BlockId(volume_id, stripe.number, index), extent.offset, extent.length)
                RECONSTRUCT_BYTES.inc(extent.length)
            except TrenchcoatError as exc:
                failures.append(f"block {index} on {node}: {exc}")

        while len(ranges) < codec.K and candidates:
            batch, candidates = candidates[:codec.K - len(ranges)], candidates[codec.K - len(ranges):]
            await asyncio.gather(*(fetch(i) for i in batch))
        if len(ranges) < codec.K:
            RECONSTRUCTIONS.labels("unavailable").inc()
            raise StripeUnavailable(
                f"stripe {stripe.number} of warm volume {volume_id}: block {extent.block} failed and only "
                f"{len(ranges)} of the other {codec.N - 1} blocks answered ({'; '.join(failures)}); "
                f"{codec.K} are needed to rebuild it; retry when the nodes are back")
        RECONSTRUCTIONS.labels("rebuilt").inc()
        return codec.rebuild(ranges, [extent.block])[extent.block]
