"""The f4 front: what ``F4Service`` does, over the region's cells (one, or three with XOR
geo-replication: ``f4.geo``).

``encode`` turns a sealed hot volume into stripes: it reads the live needles from a
healthy hot replica (``f4.hot``; a replica whose export fails moves on to the next),
writes them through a cell (``f4.cell``; in XOR mode the data cell that lets it pair),
then reads every blob back and checks it against the CRC the hot tier had. Only a volume
that passed is reported encoded; the caller (the Directory's migration) frees the hot
replicas after that, not before. An encode cut short leaves no manifest, so the volume
reads as not encoded and the next encode starts over; a volume whose manifest exists is
not encoded again (its bytes may be paired into an XOR), only checked. In XOR mode, a
volume whose partner waits in the other data cell is then paired; a pairing that fails
leaves both volumes whole in their cells, to be paired at a later encode.

Manifests are kept in RAM once loaded from the nodes, and read again when reads start
rebuilding around a block (the rebuilder may have moved it elsewhere). ``delete``
discards keys in the key store: the blob is NOT_FOUND at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass

from f4 import metrics
from f4.cell import Node, PlainBlob, WarmRead
from f4.geo import Region
from f4.hot import live_needles
from f4.manifest import MANIFEST_STRIPE, Manifest
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import F4StorageClient, KeyStoreClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import (
    DataLoss,
    FailedPrecondition,
    NeedleNotFound,
    NotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.f4_types import BlockId, BlockInfo
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.singleflight import SingleFlight

log = logging.getLogger(__name__)

RELOAD_AFTER_S = 5.0
"""A manifest in RAM this old is read again after a read had to rebuild around a block."""

Source = Callable[[], AsyncIterable[PlainBlob]]
"""A way to read a volume's live blobs from the start (a hot replica's export)."""



@dataclass(frozen=True, slots=True)
class Encoded:
    stripes: int
    blobs: int
    logical_bytes: int
    stored_bytes: int


class Front:
    def __init__(self, region: Region, storage: F4StorageClient, keys: KeyStoreClient, endpoints: list[str],
                 directory: DirectoryClient, stores: StoreClient, *, call_timeout_s: float) -> None:
        self.region = region
        self._storage = storage
        self._keys = keys
        self._endpoints = endpoints
        self._directory = directory
        self._stores = stores
        self._timeout = call_timeout_s
        self._manifests: dict[int, Manifest] = {}
        self._loading: SingleFlight[int, Manifest] = SingleFlight()
        self._loaded_at: dict[int, float] = {}
        self._stale: set[int] = set()
        """Volumes whose manifest is read again at the next read (one needed a rebuild)."""
        self._encoding: set[int] = set()

    async def refresh_nodes(self) -> list[Node]:
        """Asks every storage node its cell and the failure domains it serves;
        unreachable ones are left out. Returns the nodes that answered."""
        answers = await asyncio.gather(*(self._storage.describe(a) for a in self._endpoints), return_exceptions=True)
        nodes: list[tuple[Node, str]] = []
        for address, answer in zip(self._endpoints, answers, strict=True):
            if isinstance(answer, TrenchcoatError):
                log.warning("f4 storage node %s left out of new stripes: %s", address, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                nodes.append((Node(address, answer.domains), answer.cell))
        self.region.set_nodes(nodes)
        return [n for n, _ in nodes]

    async def encoded_volumes(self) -> list[Manifest]:
        """The manifest of every volume the region's answering nodes hold one of."""
        answers = await asyncio.gather(*(self._storage.list_blocks(n.address) for n in self.region.nodes),
                                       return_exceptions=True)
        volumes = {b.block.volume for a in answers if isinstance(a, list) for b in a
                   if b.block.stripe == MANIFEST_STRIPE}
        out = []
        for volume_id in sorted(volumes):
            try:
                out.append(await self.manifest(volume_id, fresh=True))
            except TrenchcoatError as exc:
                log.warning("volume %d: its manifest could not be read: %s", volume_id, exc)
        return out

    async def encode(self, logical_volume: int) -> Encoded:
        volume = await self._directory.locate(logical_volume)  # as a directory sees it now, not a copy
        if volume.state not in ("read-only", "sealed"):
            raise FailedPrecondition(f"logical volume {logical_volume} is {volume.state}: only a sealed "
                                     "(read-only) volume is encoded into f4")
        if logical_volume in self._encoding:
            raise Unavailable(f"logical volume {logical_volume} is being encoded already; retry when it is done")
        self._encoding.add(logical_volume)
        sources = [(f"store {r.machine_id}", functools.partial(live_needles, self._stores, r.address, logical_volume,
                                                               chunk_timeout_s=self._timeout))
                   for r in sorted(volume.replicas, key=lambda r: not r.alive)]
        try:
            return await self.encode_from(logical_volume, sources)
        finally:
            self._encoding.discard(logical_volume)
            metrics.ENCODING.labels("volumes").set(len(self._encoding))

    async def encode_from(self, logical_volume: int, sources: Sequence[tuple[str, Source]]) -> Encoded:
        """Encodes the volume from the first of ``sources`` (name, the blobs) that gives it
        whole, checks every blob reads back, and pairs it in XOR mode."""
        metrics.ENCODING.labels("volumes").set(len(self._encoding))
        await self.refresh_nodes()
        try:
            manifest: Manifest | None = await self.manifest(logical_volume, fresh=True)
            log.info("volume %d is encoded already (manifest version %d): checking it", logical_volume,
                     manifest.version if manifest else 0)
        except NotFound:
            manifest = None
        partner = None
        if manifest is None:
            cell_name, partner = self.region.choose(await self.encoded_volumes(), logical_volume)
            cell = self.region.cells[cell_name]
            failures = []
            for name, blobs in sources:
                try:
                    manifest = await cell.encode(logical_volume, blobs())
                    break
                except (Unavailable, DataLoss) as exc:  # that replica cannot give its volume whole: the next may
                    failures.append(f"{name}: {exc}")
                    log.warning("encode of volume %d from %s failed: %s", logical_volume, name, exc)
            else:
                raise Unavailable(f"no replica of volume {logical_volume} could be encoded: {'; '.join(failures)}")
        assert manifest is not None
        cell = self.region.cell(manifest.cell)
        metrics.ENCODING.labels("blobs").set(len(manifest.blobs))
        for checked, ((key, alt), blob) in enumerate(manifest.blobs.items(), 1):
            # A needle deleted while the volume was encoded is gone, as it should be.
            with contextlib.suppress(NeedleNotFound):
                await cell.read(manifest, key, alt, blob.cookie)  # checks the hot tier's CRC
            metrics.ENCODING.labels("checked").set(checked)
        self._remember(manifest)
        if partner is not None:
            try:
                self._remember(await self.region.pair(partner, manifest))
            except TrenchcoatError as exc:
                metrics.PAIRS.labels("failed").inc()
                log.warning("volumes %d and %d could not be paired now (each is whole in its own cell; a later "
                            "encode pairs them): %s", partner.volume_id, logical_volume, exc)
        stored = manifest.stored_bytes
        log.info("volume %d encoded in cell %r: %d blobs, %d stripes, %d logical bytes, %d stored (%.2fx)",
                 logical_volume, manifest.cell, len(manifest.blobs), len(manifest.stripes), manifest.logical_bytes,
                 stored, stored / max(manifest.logical_bytes, 1))
        return Encoded(len(manifest.stripes), len(manifest.blobs), manifest.logical_bytes, stored)

    def _remember(self, manifest: Manifest) -> None:
        self._manifests[manifest.volume_id] = manifest
        self._loaded_at[manifest.volume_id] = time.monotonic()
        self._stale.discard(manifest.volume_id)

    async def manifest(self, volume_id: int, *, fresh: bool = False) -> Manifest:
        """The volume's manifest, from RAM; read again from the nodes when ``fresh`` or
        when a read had to rebuild around a block since it was loaded (a rebuilder may
        have moved the block). A reload that fails keeps the copy in RAM."""
        found = self._manifests.get(volume_id)
        if found is not None and not fresh and volume_id not in self._stale:
            return found
        try:
            return await self._loading.run(volume_id, lambda: self._load(volume_id))  # one load per volume
        except NotFound:
            if found is None:
                raise
            return found
        except TrenchcoatError:
            if found is None:
                raise
            log.warning("volume %d: its manifest could not be read again; keeping the one in RAM", volume_id)
            return found

    async def _load(self, volume_id: int) -> Manifest:
        if not self.region.nodes:
            await self.refresh_nodes()
        first = self.region.cells[self.region.names[0]]
        try:
            manifest = await first.load_manifest(volume_id, [n.address for n in self.region.nodes])
        except NotFound:  # perhaps on a node that was away at the last refresh
            await self.refresh_nodes()
            manifest = await first.load_manifest(volume_id, [n.address for n in self.region.nodes])
        self._remember(manifest)
        return manifest

    async def read(self, needle: NeedleRef) -> WarmRead:
        manifest = await self.manifest(needle.logical_volume)
        fallback = None
        if manifest.buddy and manifest.xor:
            try:
                fallback = self.region.fallback(await self.manifest(manifest.buddy), await self.manifest(manifest.xor))
            except TrenchcoatError as exc:
                log.warning("volume %d: its buddy %d or XOR %#x cannot be found (%s); reading without them",
                            manifest.volume_id, manifest.buddy, manifest.xor, exc)
        got = await self.region.cell(manifest.cell).read(manifest, needle.key, needle.alternate_key, needle.cookie,
                                                         fallback=fallback)
        if got.reconstructed and time.monotonic() - self._loaded_at.get(needle.logical_volume, 0) > RELOAD_AFTER_S:
            self._stale.add(needle.logical_volume)
        return got

    async def delete(self, media_id: int, alternate_key: int | None) -> int:
        return await self._keys.discard_key(media_id, alternate_key)

    async def status(self, volume_id: int) -> list[BlockInfo]:
        """Every block of every stripe of the volume, as its node reports it (unhealthy
        when the node does not answer or does not hold it)."""
        manifest = await self.manifest(volume_id, fresh=True)
        nodes = {node for s in manifest.stripes for node, _ in s.blocks}
        answers = dict(zip(nodes, await asyncio.gather(*(self._storage.list_blocks(n) for n in nodes),
                                                       return_exceptions=True), strict=True))
        out = []
        for stripe in manifest.stripes:
            for index, (node, domain) in enumerate(stripe.blocks):
                block = BlockId(volume_id, stripe.number, index)
                held = answers[node]
                info = next((b for b in held if b.block == block), None) if isinstance(held, list) else None
                out.append(info or BlockInfo(block, node, domain, False, 0))
        return out
