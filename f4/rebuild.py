"""Whole-block rebuilds: a block that is damaged (its node's scrub or reads found a bad
chunk) or lost (its node is gone) is rebuilt from 10 other blocks of its stripe, range by
range, throttled to ``bytes_per_s`` so live reads keep their latency, then put durably
(the node checks the whole block's CRC32C on arrival), read back and compared, and only
then recorded in the manifest when it moved to another node.

A damaged block is rebuilt in place (same node, same failure domain); a block whose node
does not answer goes to a failure domain the stripe does not use yet. A rebuild cut short
(the process dies) leaves the old placement in the manifest; it is simply run again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field, replace

from prometheus_client import Counter, Gauge

from f4.cell import Cell
from f4.layout import Extent, place
from f4.manifest import Manifest
from trenchcoat.errors import DataLoss, TrenchcoatError
from trenchcoat.f4_client import F4StorageClient
from trenchcoat.f4_types import BlockId
from trenchcoat.workers import keep_pace

log = logging.getLogger(__name__)

REBUILD_BYTES = Counter("trenchcoat_f4_rebuild_bytes_total", "Bytes of blocks rebuilt whole.")
REBUILDS = Counter("trenchcoat_f4_rebuilds_total", "Whole-block rebuilds, by outcome.", ["outcome"])
THROTTLE = Gauge("trenchcoat_f4_rebuild_throttle_bytes_per_s", "Bytes a second whole-block rebuilds may read.")

STEP = 1024 * 1024
"""Bytes of a block rebuilt per step (the throttle's grain)."""


@dataclass
class Progress:
    rebuild_id: str
    block: BlockId
    total_bytes: int
    done_bytes: int = 0
    finished: bool = False
    error: str = ""
    started: float = field(default_factory=time.time)


class Rebuilder:
    def __init__(self, cell: Cell, storage: F4StorageClient, bytes_per_s: float) -> None:
        self._cell = cell
        self._storage = storage
        self.bytes_per_s = bytes_per_s
        THROTTLE.set(bytes_per_s)
        self.progress: list[Progress] = []
        self._ids = itertools.count(1)

    async def rebuild(self, manifest: Manifest, stripe_number: int, index: int, *, moved: bool) -> Progress:
        """Rebuilds block ``index`` of the stripe; onto a new failure domain when ``moved``
        (its node is gone), else in place. Returns its progress record, finished."""
        stripe = manifest.stripes[stripe_number]
        size = self._cell.geometry.block_size(stripe.data_bytes)
        block = BlockId(manifest.volume_id, stripe_number, index)
        record = Progress(f"r{next(self._ids)}", block, size)
        self.progress.insert(0, record)
        del self.progress[100:]
        node, domain = stripe.blocks[index]
        if moved:
            domains = self._cell.domains()
            taken = [d for i, (_, d) in enumerate(stripe.blocks) if i != index]
            [(domain, node)] = place({d: a for d, a in domains.items() if d != domain and node not in a},
                                     taken=taken)
        loop = asyncio.get_running_loop()
        data = bytearray()
        try:
            for offset in range(0, size, STEP):
                began = loop.time()
                length = min(STEP, size - offset)
                data += await self._cell.reconstruct(manifest.volume_id, stripe, Extent(index, offset, length))
                record.done_bytes = len(data)
                REBUILD_BYTES.inc(length)
                await keep_pace(began, length, self.bytes_per_s)
            await self._storage.put_block(node, block, domain, bytes(data))
            if await self._storage.read_range(node, block, 0, size) != data:
                raise DataLoss(f"{block} rebuilt onto {node} does not read back as written")
            if (node, domain) != stripe.blocks[index]:
                blocks = list(stripe.blocks)
                blocks[index] = (node, domain)
                manifest.stripes[stripe_number] = replace(stripe, blocks=tuple(blocks))
                await self._cell.rewrite_manifest(manifest)
        except TrenchcoatError as exc:
            record.error = str(exc)
            REBUILDS.labels("failed").inc()
            raise
        record.finished = True
        REBUILDS.labels("ok").inc()
        log.info("%s rebuilt (%d bytes) on %s in domain %s", block, size, node, domain)
        return record
