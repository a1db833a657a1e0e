"""What an encoded volume holds and where: its blobs (needle, place in a stripe, type,
checksum of the plaintext) and its stripes (size, and which node and failure domain
keeps each of the 14 blocks).

The manifest is what a warm read looks a blob up in, so it lives with the blocks, not in
a database: it is written as a block of its own (``MANIFEST_STRIPE``) to every node of
the volume's first stripe, checked by the nodes' chunk CRCs like any block, and loaded
into RAM by the f4 front. A rebuilder that moves a block writes it again one version up;
the highest version any node holds wins (``load``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from f4.layout import Geometry
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.errors import ChecksumMismatch, NotFound, TrenchcoatError, Unavailable
from trenchcoat.f4_types import BlockId

MANIFEST_STRIPE = 2**32 - 1
"""The stripe number under which a volume's manifest is kept as a block."""
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Blob:
    key: int
    alternate_key: int
    cookie: int
    media_type: int
    stripe: int
    offset: int
    """Where its sealed bytes start in the stripe's stream."""
    sealed_length: int
    crc32c: int
    """Of the plaintext, as the hot tier had it."""
    plain_length: int


@dataclass(frozen=True, slots=True)
class Stripe:
    number: int
    data_bytes: int
    blocks: tuple[tuple[str, str], ...]
    """(node address, failure domain) of blocks 0-13."""


@dataclass(slots=True)
class Manifest:
    volume_id: int
    geometry: Geometry
    stripes: list[Stripe] = field(default_factory=list)
    blobs: dict[tuple[int, int], Blob] = field(default_factory=dict)
    """(needle key, alternate key) -> blob."""
    version: int = 1
    """Raised each time the manifest is written again (a block moved by a rebuild): the
    highest version any node holds is the manifest."""
    cell: str = ""
    """The cell its blocks are in (empty in a region of one cell)."""
    buddy: int = 0
    """XOR geo-replication: the volume it is paired with in the other data cell (0: none yet)."""
    xor: int = 0
    """XOR geo-replication: the volume in the XOR cell holding the XOR of this one's and
    its buddy's blocks (``xor_volume_id``)."""
    xor_of: tuple[int, int] = (0, 0)
    """Of a volume in the XOR cell: the two volumes whose blocks it is the XOR of."""

    @property
    def logical_bytes(self) -> int:
        return sum(b.plain_length for b in self.blobs.values())

    @property
    def stored_bytes(self) -> int:
        """Bytes of every block of every stripe (the manifest's own copies aside)."""
        return sum(self.geometry.block_size(s.data_bytes) * len(s.blocks) for s in self.stripes)

    def to_bytes(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "volume_id": self.volume_id, "version": self.version,
            "cell_bytes": self.geometry.cell_bytes, "rows": self.geometry.rows,
            "cell": self.cell, "buddy": self.buddy, "xor": self.xor, "xor_of": list(self.xor_of),
            "stripes": [[s.number, s.data_bytes, [list(b) for b in s.blocks]] for s in self.stripes],
            "blobs": [[b.key, b.alternate_key, b.cookie, b.media_type, b.stripe, b.offset, b.sealed_length,
                       b.crc32c, b.plain_length] for b in self.blobs.values()],
        }, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            a, b = doc.get("xor_of", (0, 0))
            manifest = cls(doc["volume_id"], Geometry(doc["cell_bytes"], doc["rows"]), version=doc.get("version", 1),
                           cell=doc.get("cell", ""), buddy=doc.get("buddy", 0), xor=doc.get("xor", 0),
                           xor_of=(int(a), int(b)))
            manifest.stripes = [Stripe(n, size, tuple((a, d) for a, d in blocks)) for n, size, blocks in doc["stripes"]]
            for fields in doc["blobs"]:
                blob = Blob(*fields)
                manifest.blobs[blob.key, blob.alternate_key] = blob
        except (ValueError, KeyError, TypeError) as exc:
            raise ChecksumMismatch(f"an f4 manifest does not parse ({exc})") from None
        return manifest


XOR_VOLUME = 1 << 31
"""Volume ids at and above this are XOR volumes (kept in a region's XOR cell)."""


def xor_volume_id(second: int) -> int:
    """The id of the XOR volume of the pair completed by encoding volume ``second``: a
    volume is encoded once, so no two pairings ever share an XOR volume (a pairing that
    failed midway can never be overwritten by a later one)."""
    return XOR_VOLUME | second


async def _put(storage: F4StorageClient, manifest: Manifest,
               places: Sequence[tuple[str, str]] = ()) -> list[TrenchcoatError | None]:
    """Puts the manifest as a block on every node of the first stripe, and on ``places``
    (node, domain: copies kept in another cell); each put's error, or None."""
    raw = manifest.to_bytes()

    async def put(index: int, node: str, domain: str) -> TrenchcoatError | None:
        try:
            await storage.put_block(node, BlockId(manifest.volume_id, MANIFEST_STRIPE, index), domain, raw)
        except TrenchcoatError as exc:
            return exc
        return None

    return await asyncio.gather(*(put(i, node, domain) for i, (node, domain) in enumerate(manifest.stripes[0].blocks)),
                                *(put(i, node, domain) for i, (node, domain) in enumerate(places)))


async def write(storage: F4StorageClient, manifest: Manifest) -> None:
    """Writes a new volume's manifest to every node of its first stripe (each must take it)."""
    if manifest.stripes:
        failed = [r for r in await _put(storage, manifest) if r is not None]
        if failed:
            raise failed[0]


async def rewrite(storage: F4StorageClient, manifest: Manifest, also: Sequence[tuple[str, str]] = ()) -> None:
    """Writes the manifest again, one version up, to every node of its first stripe (and
    ``also``) that answers (at least one must)."""
    manifest.version += 1
    results = await _put(storage, manifest, also)
    failed = [r for r in results if r is not None]
    if len(failed) == len(results):
        raise Unavailable(f"the manifest of volume {manifest.volume_id} could be written to no node: {failed[0]}")


async def load(storage: F4StorageClient, nodes: Iterable[str], volume_id: int) -> Manifest:
    """The volume's manifest: the highest version any of ``nodes`` that answers holds."""
    failures: list[str] = []

    async def from_node(address: str) -> Manifest | None:
        try:
            for info in await storage.list_blocks(address):
                if info.block.volume == volume_id and info.block.stripe == MANIFEST_STRIPE:
                    return Manifest.from_bytes(await storage.read_range(address, info.block, 0, info.size))
        except TrenchcoatError as exc:
            failures.append(f"{address}: {exc}")
        return None

    found = [m for m in await asyncio.gather(*(from_node(a) for a in nodes)) if m is not None]
    if not found:
        raise NotFound(f"volume {volume_id} is not encoded in this cell (no manifest found"
                       f"{'; ' + '; '.join(failures) if failures else ''})")
    best = max(found, key=lambda m: m.version)
    paired = [m for m in found if m.buddy]
    if paired and not best.buddy:
        # A pairing is written once and never undone: a copy rewritten at the same time
        # without it (a rebuilder moving a block) does not undo it.
        source = max(paired, key=lambda m: m.version)
        best.buddy, best.xor = source.buddy, source.xor
    return best
