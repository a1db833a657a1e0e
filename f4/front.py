"""The f4 front: what ``F4Service`` does, over one cell.

``encode`` turns a sealed hot volume into stripes: it reads the live needles from a
healthy hot replica (``f4.hot``; a replica whose export fails moves on to the next),
writes them through the cell (``f4.cell``), then reads every blob back through the cell
and checks it against the CRC the hot tier had. Only a volume that passed is reported
encoded; the caller (the Directory's migration) frees the hot replicas after that, not
before. An encode cut short leaves no manifest, so the volume reads as not encoded and
the next encode starts over.

Manifests are kept in RAM once loaded from the cell's nodes, and read again when reads
start rebuilding around a block (the rebuilder may have moved it elsewhere). ``delete`` discards keys in
the key store: the blob is NOT_FOUND at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from f4.cell import Cell, Node, WarmRead
from f4.hot import live_needles
from f4.manifest import Manifest
from trenchcoat.directory_client import DirectoryClient
from trenchcoat.errors import (
    DataLoss,
    FailedPrecondition,
    NeedleNotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.f4_client import F4StorageClient, KeyStoreClient
from trenchcoat.f4_types import BlockId, BlockInfo
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.singleflight import SingleFlight
from trenchcoat.store_client import StoreClient

log = logging.getLogger(__name__)

RELOAD_AFTER_S = 5.0
"""A manifest in RAM this old is read again after a read had to rebuild around a block."""


@dataclass(frozen=True, slots=True)
class Encoded:
    stripes: int
    blobs: int
    logical_bytes: int
    stored_bytes: int


class Front:
    def __init__(self, cell: Cell, storage: F4StorageClient, keys: KeyStoreClient, endpoints: list[str],
                 directory: DirectoryClient, stores: StoreClient, *, call_timeout_s: float) -> None:
        self.cell = cell
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

    async def refresh_nodes(self) -> list[Node]:
        """Asks every storage node which failure domains it serves; unreachable ones are left out."""
        answers = await asyncio.gather(*(self._storage.describe(a) for a in self._endpoints), return_exceptions=True)
        nodes = []
        for address, answer in zip(self._endpoints, answers, strict=True):
            if isinstance(answer, TrenchcoatError):
                log.warning("f4 storage node %s left out of new stripes: %s", address, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                nodes.append(Node(address, answer[0]))
        self.cell.nodes = nodes
        return nodes

    async def encode(self, logical_volume: int) -> Encoded:
        volume = await self._directory.locate(logical_volume)  # as a directory sees it now, not a copy
        if volume.state not in ("read-only", "sealed"):
            raise FailedPrecondition(f"logical volume {logical_volume} is {volume.state}: only a sealed "
                                     "(read-only) volume is encoded into f4")
        await self.refresh_nodes()
        replicas = sorted(volume.replicas, key=lambda r: not r.alive)
        failures = []
        for replica in replicas:
            try:
                manifest = await self.cell.encode(logical_volume, live_needles(
                    self._stores, replica.address, logical_volume, chunk_timeout_s=self._timeout))
                break
            except (Unavailable, DataLoss) as exc:  # that replica cannot give its volume whole: the next may
                failures.append(f"store {replica.machine_id}: {exc}")
                log.warning("encode of volume %d from store %d failed: %s", logical_volume, replica.machine_id, exc)
        else:
            raise Unavailable(f"no replica of volume {logical_volume} could be encoded: {'; '.join(failures)}")
        for (key, alt), blob in manifest.blobs.items():
            try:
                await self.cell.read(manifest, key, alt, blob.cookie)  # checks the hot tier's CRC
            except NeedleNotFound:
                pass  # deleted while the volume was encoded: its key is gone, as it should be
        self._manifests[logical_volume] = manifest
        self._loaded_at[logical_volume] = time.monotonic()
        stored = manifest.stored_bytes
        log.info("volume %d encoded: %d blobs, %d stripes, %d logical bytes, %d stored (%.2fx)", logical_volume,
                 len(manifest.blobs), len(manifest.stripes), manifest.logical_bytes, stored,
                 stored / max(manifest.logical_bytes, 1))
        return Encoded(len(manifest.stripes), len(manifest.blobs), manifest.logical_bytes, stored)

    async def manifest(self, volume_id: int, *, fresh: bool = False) -> Manifest:
        """The volume's manifest, from RAM; read again from the nodes when ``fresh`` or
        when a read had to rebuild around a block since it was loaded (a rebuilder may
        have moved the block). A reload that fails keeps the copy in RAM."""
        found = self._manifests.get(volume_id)
        if found is not None and not fresh and volume_id not in self._stale:
            return found
        try:
            return await self._loading.run(volume_id, lambda: self._load(volume_id))  # one load per volume
        except TrenchcoatError:
            if found is None:
                raise
            log.warning("volume %d: its manifest could not be read again; keeping the one in RAM", volume_id)
            return found

    async def _load(self, volume_id: int) -> Manifest:
        await self.refresh_nodes()
        manifest = await self.cell.load_manifest(volume_id)
        self._manifests[volume_id] = manifest
        self._loaded_at[volume_id] = time.monotonic()
        self._stale.discard(volume_id)
        return manifest

    async def read(self, needle: NeedleRef) -> WarmRead:
        manifest = await self.manifest(needle.logical_volume)
        got = await self.cell.read(manifest, needle.key, needle.alternate_key, needle.cookie)
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
