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
the same byte range of 10 other blocks of the stripe (``f4.reconstruct``), by a backoff
node when the cell has one, read in parallel (a read slower
than ``hedge_s`` counts as failed: a slow node costs a reconstruction, not the reader's
patience); a block that
fails then is replaced by the next. Fewer than 10 answering is UNAVAILABLE naming the
stripe: never wrong bytes, which the blob's authentication tag and plaintext CRC32C
guarantee end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import crc32c

from f4 import crypto, metrics
from f4 import manifest as manifest_io
from f4.layout import Extent, Geometry, place
from f4.manifest import Blob, Manifest, Stripe
from f4.reconstruct import reconstruct
from trenchcoat.clients.f4 import BackoffClient, F4StorageClient, KeyStoreClient
from trenchcoat.errors import (
    DataLoss,
    FailedPrecondition,
    NeedleNotFound,
    NotFound,
    StripeUnavailable,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.f4_types import BlockId

log = logging.getLogger(__name__)

KEY_BATCH = 32
"""Blobs whose keys an encode asks the key store for at once."""
KEY_BATCH_BYTES = 16 * 1024 * 1024
"""Most bytes of blobs an encode holds while their keys are asked for."""



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


Fallback = Callable[[Stripe, Extent], Awaitable[bytes]]
"""Where a read turns for an extent whose stripe cannot be rebuilt in its own cell."""


class Cell:
    def __init__(self, storage: F4StorageClient, keys: KeyStoreClient, nodes: Sequence[Node],
                 geometry: Geometry, *, hedge_s: float | None = None, backoff: BackoffClient | None = None,
                 name: str = "") -> None:
        self.name = name
        """The cell's name in its region (empty in a region of one cell)."""
        self._storage = storage
        self.backoff = backoff
        """Backoff nodes that rebuild the extents of failed reads (None or empty: this process does)."""
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
        manifest = Manifest(volume_id, self.geometry, cell=self.name)
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
        await manifest_io.write(self._storage, manifest)
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

    async def load_manifest(self, volume_id: int, addresses: Sequence[str] | None = None) -> Manifest:
        """The volume's manifest: the highest version any node of the cell (or of
        ``addresses``) that answers holds."""
        return await manifest_io.load(self._storage, [n.address for n in self.nodes] if addresses is None
                                      else addresses, volume_id)

    # --- reading ---------------------------------------------------------------------

    async def read(self, manifest: Manifest, key: int, alternate_key: int, cookie: int, *,
                   fallback: Fallback | None = None) -> WarmRead:
        """A blob's plaintext, verified; rebuilt online where a data block fails, and by
        ``fallback`` (XOR geo-replication: ``f4.geo``) where its stripe cannot be rebuilt."""
        blob = manifest.blobs.get((key, alternate_key))
        if blob is None or blob.cookie != cookie:
            raise NeedleNotFound(f"volume {manifest.volume_id} holds no needle {key:#x}/{alternate_key}")
        try:
            blob_key = await self._keys.get_key(key, alternate_key)
        except NotFound:
            raise NeedleNotFound(f"needle {key:#x}/{alternate_key} was deleted") from None
        stripe = manifest.stripes[blob.stripe]
        extents = self.geometry.extents(stripe.data_bytes, blob.offset, blob.sealed_length)
        pieces = await asyncio.gather(*(self._extent(manifest.volume_id, stripe, e, fallback) for e in extents))
        sealed = b"".join(data for data, _ in pieces)
        plain = crypto.open_sealed(blob_key, sealed, key=key, alternate_key=alternate_key)
        if crc32c.crc32c(plain) != blob.crc32c:
            raise DataLoss(f"needle {key:#x}/{alternate_key} of warm volume {manifest.volume_id} "
                           "fails its checksum after decryption")
        return WarmRead(plain, blob.media_type, any(rebuilt for _, rebuilt in pieces))

    async def block_range(self, volume_id: int, stripe: Stripe, extent: Extent) -> bytes:
        """A range of any block of a stripe (parity too), rebuilt from 10 others when its own read fails."""
        return (await self._extent(volume_id, stripe, extent, None))[0]

    async def _extent(self, volume_id: int, stripe: Stripe, extent: Extent,
                      fallback: Fallback | None) -> tuple[bytes, bool]:
        """The extent's bytes and whether they were rebuilt. A read slower than
        ``hedge_s`` is hedged, not abandoned: the rebuild starts beside it and whichever
        answers first wins, so a slow node still serves when the stripe cannot be rebuilt
        without it (four others lost)."""
        node, _ = stripe.blocks[extent.block]
        block = BlockId(volume_id, stripe.number, extent.block)
        reading = asyncio.ensure_future(self._storage.read_range(node, block, extent.offset, extent.length))
        direct: asyncio.Task[bytes] | None = reading
        try:
            return await asyncio.wait_for(asyncio.shield(reading), self.hedge_s), False
        except TimeoutError:
            log.debug("%s on %s is slower than %ss; rebuilding bytes %d+%d beside it", block, node, self.hedge_s,
                      extent.offset, extent.length)
        except TrenchcoatError as exc:
            direct = None
            log.debug("%s on %s failed (%s); rebuilding bytes %d+%d from the stripe", block, node, exc,
                      extent.offset, extent.length)
        metrics.DEGRADED_READS.inc()
        rebuild = asyncio.ensure_future(self.reconstruct(volume_id, stripe, extent))
        try:
            if direct is not None:
                await asyncio.wait((direct, rebuild), return_when=asyncio.FIRST_COMPLETED)
                if direct.done() and direct.exception() is None:
                    return direct.result(), False
                if not rebuild.done() or rebuild.exception() is not None:
                    with contextlib.suppress(TrenchcoatError):
                        return await direct, False  # the rebuild failed (or is slower): the slow read may still come
            try:
                return await rebuild, True
            except StripeUnavailable:
                if fallback is None:
                    raise
                return await fallback(stripe, extent), True
        finally:
            for task in (direct, rebuild):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TrenchcoatError):
                        await task
                elif task is not None and not task.cancelled():
                    task.exception()  # retrieved: a loser's error is not logged as lost

    async def reconstruct(self, volume_id: int, stripe: Stripe, extent: Extent) -> bytes:
        """The extent's bytes rebuilt from the same range of 10 other blocks of the stripe:
        by a backoff node when the cell has them (CPU-heavy work off the front), here when
        none answers."""
        block = BlockId(volume_id, stripe.number, extent.block)
        sources = [node for node, _ in stripe.blocks]
        if self.backoff:
            try:
                data, _ = await self.backoff.reconstruct(block, sources, extent.offset, extent.length)
                if len(data) == extent.length:
                    return data
                log.error("backoff node answered %d bytes for %d of %s; rebuilding here", len(data),
                          extent.length, block)
            except StripeUnavailable:
                raise
            except TrenchcoatError as exc:
                log.warning("no backoff node rebuilt bytes %d+%d of %s (%s); rebuilding here", extent.offset,
                            extent.length, block, exc)
        return (await reconstruct(self._storage, block, sources, extent.offset, extent.length)).data
