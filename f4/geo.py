"""XOR geo-replication: a region of three cells, two for data and one for the XOR of
pairs of volumes, so a whole cell can be lost at 2.1x on disk instead of 2.8x for two full
copies (the f4 paper, section 5.3).

**Pairing.** A volume is encoded into whichever data cell lets it pair: if a volume in
the other data cell waits for a buddy (``choose``), this one goes opposite it, and once
both read back the XOR cell is given, for every stripe ``s`` and block ``i``, the XOR of
the two volumes' block ``(s, i)`` (the shorter one taken as zero-padded; a stripe only one
of them has is copied as it is). Reed-Solomon is linear and XOR is its addition, so the
XOR of two stripes is itself a stripe of RS(10,4): the XOR volume is kept, read and
rebuilt like any other (``xor_volume_id`` names it; its manifest has no blobs). The
two data manifests then record their buddy and the XOR volume, and each is also copied
to the XOR cell, so a read finds it with its own cell gone. A volume waiting for a buddy
is protected by its own cell only (1.4x) until the next volume is encoded.

**Reading with a cell lost.** When a range of a data block can be neither read nor
rebuilt in its own cell (``StripeUnavailable``), it is the XOR of the same range of the
buddy's block and of the XOR volume's block, each read (or rebuilt) in its own cell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import numpy as np

from f4 import manifest as manifest_io
from f4 import metrics
from f4.cell import Cell, Fallback, Node
from f4.layout import Extent, Geometry, place
from f4.manifest import Manifest, Stripe, xor_volume_id
from trenchcoat.clients.f4 import BackoffClient, F4StorageClient, KeyStoreClient
from trenchcoat.errors import FailedPrecondition
from trenchcoat.f4_types import BlockId

log = logging.getLogger(__name__)



def xor(a: bytes, b: bytes) -> bytes:
    """The XOR of two byte strings, the shorter one zero-padded."""
    if len(a) < len(b):
        a, b = b, a
    out = np.frombuffer(a, dtype=np.uint8).copy()
    out[:len(b)] ^= np.frombuffer(b, dtype=np.uint8)
    return out.tobytes()


class Region:
    """The cells of a region (one, or three for XOR geo-replication) seen from the front."""

    def __init__(self, storage: F4StorageClient, keys: KeyStoreClient, geometry: Geometry, names: Sequence[str], *,
                 hedge_s: float | None = None, backoff: BackoffClient | None = None) -> None:
        if len(names) not in (0, 1, 3):
            raise FailedPrecondition(f"a region has one cell or three (XOR geo-replication), not {list(names)}")
        self.names = tuple(names) or ("",)
        self._storage = storage
        self.cells = {name: Cell(storage, keys, [], geometry, hedge_s=hedge_s, backoff=backoff, name=name)
                      for name in self.names}

    @property
    def xor_mode(self) -> bool:
        return len(self.names) == 3

    @property
    def data_cells(self) -> tuple[str, ...]:
        return self.names[:2] if self.xor_mode else self.names

    @property
    def xor_cell(self) -> Cell:
        return self.cells[self.names[2]]

    def cell(self, name: str) -> Cell:
        """The cell a manifest names (a manifest from before cells had names: the first)."""
        return self.cells.get(name) or self.cells[self.names[0]]

    def set_nodes(self, nodes: Iterable[tuple[Node, str]]) -> None:
        """Gives each cell the answering nodes (node, the cell it says it is in). In a
        region of one cell every node is in it; otherwise a node naming no configured
        cell is left out."""
        by_cell: dict[str, list[Node]] = {name: [] for name in self.names}
        for node, cell in nodes:
            if len(self.names) == 1:
                by_cell[self.names[0]].append(node)
            elif cell in by_cell:
                by_cell[cell].append(node)
            else:
                log.warning("f4 storage node %s says it is in cell %r, not one of f4.cells %s: left out",
                            node.address, cell, list(self.names))
        for name, cell_nodes in by_cell.items():
            self.cells[name].nodes = cell_nodes

    @property
    def nodes(self) -> list[Node]:
        return [n for cell in self.cells.values() for n in cell.nodes]

    def choose(self, encoded: Iterable[Manifest], volume_id: int) -> tuple[str, Manifest | None]:
        """(the data cell to encode ``volume_id`` into, the volume it will pair with or
        None). Pure: decided from the manifests of the volumes encoded so far."""
        if not self.xor_mode:
            return self.names[0], None
        waiting = sorted((m for m in encoded if m.cell in self.data_cells and not m.buddy and not m.xor_of[0]
                          and m.volume_id != volume_id), key=lambda m: m.volume_id)
        if not waiting:
            return self.data_cells[0], None
        partner = waiting[0]
        return next(c for c in self.data_cells if c != partner.cell), partner

    async def pair(self, first: Manifest, second: Manifest) -> Manifest:
        """Writes the XOR of two volumes (in the two data cells) to the XOR cell and records
        the pair in both manifests; returns the XOR volume's manifest."""
        if first.geometry != second.geometry:
            raise FailedPrecondition(f"volumes {first.volume_id} and {second.volume_id} are laid out differently "
                                     "(f4 cell_bytes or rows changed): they cannot be paired")
        xor_cell = self.xor_cell
        out = Manifest(xor_volume_id(second.volume_id), first.geometry, cell=self.names[2],
                       xor_of=(first.volume_id, second.volume_id))
        for number in range(max(len(first.stripes), len(second.stripes))):
            pieces = [m.stripes[number] if number < len(m.stripes) else None for m in (first, second)]
            data_bytes = max(s.data_bytes for s in pieces if s is not None)
            placement = place(xor_cell.domains())

            async def one(index: int, domain: str, node: str, number: int = number,
                          pieces: list[Stripe | None] = pieces) -> None:
                parts = await asyncio.gather(*(self._whole_block(m, s, index) for m, s in zip((first, second), pieces,
                                                                                               strict=True)))
                await self._storage.put_block(node, BlockId(out.volume_id, number, index), domain, xor(*parts))

            await asyncio.gather(*(one(i, d, n) for i, (d, n) in enumerate(placement)))
            out.stripes.append(Stripe(number, data_bytes, tuple((n, d) for d, n in placement)))
        await manifest_io.write(self._storage, out)
        copies = out.stripes[0].blocks
        for this, other in ((first, second), (second, first)):
            this.buddy, this.xor = other.volume_id, out.volume_id
            await manifest_io.rewrite(self._storage, this, also=copies)
        metrics.PAIRS.labels("ok").inc()
        log.info("volumes %d (cell %s) and %d (cell %s) paired: their XOR is volume %#x in cell %s",
                 first.volume_id, first.cell, second.volume_id, second.cell, out.volume_id, out.cell)
        return out

    async def _whole_block(self, manifest: Manifest, stripe: Stripe | None, index: int) -> bytes:
        if stripe is None:
            return b""
        size = manifest.geometry.block_size(stripe.data_bytes)
        return await self.cell(manifest.cell).block_range(manifest.volume_id, stripe, Extent(index, 0, size))

    def fallback(self, buddy: Manifest, xor_manifest: Manifest) -> Fallback:
        """What a read of a volume whose cell cannot rebuild an extent turns to: the same
        range of the buddy's block XOR the XOR volume's block."""
        async def from_buddy(stripe: Stripe, extent: Extent) -> bytes:
            ours, theirs = await asyncio.gather(
                self._range(xor_manifest, stripe.number, extent),
                self._range(buddy, stripe.number, extent))
            metrics.XOR_READS.inc()
            return xor(ours, theirs)[:extent.length]

        return from_buddy

    async def _range(self, manifest: Manifest, number: int, extent: Extent) -> bytes:
        """``extent`` of block ``(number, extent.block)`` of the volume, the part past its
        end (or of a stripe it lacks) as zeros."""
        if number >= len(manifest.stripes):
            return bytes(extent.length)
        stripe = manifest.stripes[number]
        size = manifest.geometry.block_size(stripe.data_bytes)
        length = min(extent.length, size - extent.offset)
        if length <= 0:
            return bytes(extent.length)
        got = await self.cell(manifest.cell).block_range(manifest.volume_id, stripe,
                                                         Extent(extent.block, extent.offset, length))
        return got.ljust(extent.length, b"\0")

