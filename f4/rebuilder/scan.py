"""The rebuilder's watch over its cell: every ``scan_interval_s`` it asks every storage
node what it holds, finds each stripe's blocks in the volumes' manifests, and rebuilds
(``f4.rebuild``) the blocks that have been unhealthy for longer than ``grace_s``, one at a
time: the ones a previous run left half done first, then the ones asked for
(``RebuildBlock``), then the rest, oldest trouble first.

A block is **healthy** when its node answers and holds it intact, **damaged** when its
node holds it but a read or the node's scrub found a bad checksum, **missing** when its
node answers without it (a disk replaced), **lost** when its node does not answer. Only
``assess``, ``due`` and ``orphans`` decide; they are pure, and the loop carries out. A copy a
move left behind (its node was away and came back) is deleted once the block it was
replaced by is healthy.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from f4 import manifest as manifest_io
from f4.manifest import MANIFEST_STRIPE, Manifest
from f4.rebuild import Progress, Rebuilder, RebuildInterrupted, target
from f4.rebuilder import metrics
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.errors import NotFound, TrenchcoatError
from trenchcoat.f4_types import BlockId, BlockInfo
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)



class Health(enum.Enum):
    HEALTHY = "healthy"
    DAMAGED = "damaged"
    MISSING = "missing"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What one storage node said (``blocks`` None: it did not answer)."""

    address: str
    domains: tuple[str, ...]
    blocks: Mapping[BlockId, BlockInfo] | None


def assess(manifests: Iterable[Manifest], reports: Mapping[str, NodeReport]) -> dict[BlockId, Health]:
    """The health of every block of every stripe of ``manifests``."""
    out: dict[BlockId, Health] = {}
    for manifest in manifests:
        for stripe in manifest.stripes:
            for index, (node, _) in enumerate(stripe.blocks):
                block = BlockId(manifest.volume_id, stripe.number, index)
                report = reports.get(node)
                if report is None or report.blocks is None:
                    out[block] = Health.LOST
                    continue
                held = report.blocks.get(block)
                out[block] = Health.MISSING if held is None else Health.HEALTHY if held.healthy else Health.DAMAGED
    return out


def orphans(manifests: Iterable[Manifest], reports: Mapping[str, NodeReport],
            health: Mapping[BlockId, Health]) -> list[tuple[str, BlockId]]:
    """(node, block) of the copies left behind by moves: blocks of a volume with a manifest
    held by a node the manifest no longer names for them, while the block it names is
    healthy (never the last good copy)."""
    by_volume = {m.volume_id: m for m in manifests}
    out = []
    for address, report in reports.items():
        for block in report.blocks or ():
            manifest = by_volume.get(block.volume)
            if manifest is None or block.stripe == MANIFEST_STRIPE or block.stripe >= len(manifest.stripes):
                continue
            node, _ = manifest.stripes[block.stripe].blocks[block.index]
            if node != address and health.get(block) is Health.HEALTHY:
                out.append((address, block))
    return sorted(out)


def due(unhealthy_since: Mapping[BlockId, float], now: float, grace_s: float) -> list[BlockId]:
    """Blocks unhealthy for at least ``grace_s``, longest first."""
    return sorted((b for b, t in unhealthy_since.items() if now - t >= grace_s), key=lambda b: unhealthy_since[b])


class Scanner(PeriodicWorker):
    def __init__(self, storage: F4StorageClient, endpoints: list[str], rebuilder: Rebuilder, *, grace_s: float,
                 interval_s: float) -> None:
        super().__init__("f4 rebuilder scan", interval_s)
        self._storage = storage
        self._endpoints = endpoints
        self.rebuilder = rebuilder
        self.grace_s = grace_s
        self._manifests: dict[int, Manifest] = {}
        self.health: dict[BlockId, Health] = {}
        self._unhealthy_since: dict[BlockId, float] = {}
        self._requested: dict[BlockId, str] = {}
        self._ids: dict[BlockId, str] = {}
        """The rebuild id of each block not rebuilt yet (one id across its attempts)."""
        self.last_scan_unix_ms = 0
        """When the last scan of every node finished (ms since the Unix epoch; 0: none since
        the start): ``health`` is that scan's finding."""
        self._resume: list[Progress] = rebuilder.journal.pending()
        for p in self._resume:
            log.info("%s: a rebuild onto %s was cut short at %d of %d bytes; carrying on", p.block, p.node,
                     p.done_bytes, p.total_bytes)
            rebuilder.progress.append(p)

    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        self.wake()  # the first scan at once: a restart carries on with what it left
        await super().run()

    async def reports(self) -> dict[str, NodeReport]:
        answers = await asyncio.gather(*(self._storage.describe(a) for a in self._endpoints), return_exceptions=True)
        out = {}
        for address, answer in zip(self._endpoints, answers, strict=True):
            if isinstance(answer, TrenchcoatError):
                out[address] = NodeReport(address, (), None)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                out[address] = NodeReport(address, answer.domains, {b.block: b for b in answer.blocks})
        return out

    async def manifest(self, volume_id: int, reports: Mapping[str, NodeReport], *, fresh: bool) -> Manifest:
        if fresh or volume_id not in self._manifests:
            answering = [a for a, r in reports.items() if r.blocks is not None]
            self._manifests[volume_id] = await manifest_io.load(self._storage, answering, volume_id)
        return self._manifests[volume_id]

    async def request(self, block: BlockId) -> str:
        """Asks for ``block`` to be rebuilt at the next scan (now); its rebuild id.
        NotFound when no manifest of the cell has such a block."""
        manifest = await self.manifest(block.volume, await self.reports(), fresh=True)
        if block.stripe >= len(manifest.stripes) or not 0 <= block.index < len(manifest.stripes[block.stripe].blocks):
            raise NotFound(f"warm volume {block.volume} has no {block}")
        rebuild_id = self._requested.setdefault(block, self.rebuilder.new_id())
        self.wake()
        return rebuild_id

    async def tick(self) -> None:
        reports = await self.reports()
        volumes = {b.volume for r in reports.values() if r.blocks for b in r.blocks if b.stripe == MANIFEST_STRIPE}
        manifests = []
        for volume_id in sorted(volumes):
            try:
                manifest = await self.manifest(volume_id, reports, fresh=False)
            except TrenchcoatError as exc:
                log.warning("warm volume %d: its manifest could not be read: %s", volume_id, exc)
                continue
            if any(node in self._endpoints for stripe in manifest.stripes for node, _ in stripe.blocks):
                manifests.append(manifest)  # not a copy kept here of another cell's volume (XOR geo-replication)
        self.health = assess(manifests, reports)
        now = time.monotonic()
        for block, health in self.health.items():
            if health is Health.HEALTHY:
                self._unhealthy_since.pop(block, None)
            else:
                self._unhealthy_since.setdefault(block, now)
        for block in [b for b in self._unhealthy_since if b not in self.health]:
            del self._unhealthy_since[block]
        for health in Health:
            metrics.BLOCKS.labels(health.value).set(sum(h is health for h in self.health.values()))
        for address, block in orphans(manifests, reports, self.health):
            try:
                if await self._storage.delete_block(address, block):
                    metrics.ORPHANS_DELETED.inc()
                    log.info("%s on %s deleted: its manifest places it elsewhere now", block, address)
            except TrenchcoatError as exc:
                log.warning("%s on %s (left behind by a move) could not be deleted: %s", block, address, exc)
        metrics.UNHEALTHY_SINCE.set(max((now - t for t in self._unhealthy_since.values()), default=0))
        # Stamped before the rebuilds, which may take many minutes: the counts are this scan's.
        self.last_scan_unix_ms = int(time.time() * 1000)

        work: list[tuple[BlockId, str, str, Progress | None]] = [(p.block, p.reason, p.rebuild_id, p)
                                                                 for p in self._resume]
        work += [(b, "requested", i, None) for b, i in self._requested.items()]
        work += [(b, self.health[b].value, "", None) for b in due(self._unhealthy_since, now, self.grace_s)]
        seen: set[BlockId] = set()
        for block, reason, rebuild_id, resume in work:
            if block in seen or self.stopping():
                continue
            seen.add(block)
            await self._rebuild(block, reason, rebuild_id, resume, reports)

    async def _rebuild(self, block: BlockId, reason: str, rebuild_id: str, resume: Progress | None,
                       reports: Mapping[str, NodeReport]) -> None:
        try:
            manifest = await self.manifest(block.volume, reports, fresh=True)
            stripe = manifest.stripes[block.stripe]
            node, _ = stripe.blocks[block.index]
            answers = node in reports and reports[node].blocks is not None
            if resume is not None:
                onto = (resume.node, resume.domain)
            else:
                domains: dict[str, list[str]] = {}
                for r in reports.values():
                    if r.blocks is not None:
                        for d in r.domains:
                            domains.setdefault(d, []).append(r.address)
                onto = target(stripe, block.index, domains, node_answers=answers)
            rebuild_id = self._ids.setdefault(block, rebuild_id or self.rebuilder.new_id())
            await self.rebuilder.rebuild(manifest, block.stripe, block.index, onto, reason=reason,
                                         rebuild_id=rebuild_id, resume=resume)
        except RebuildInterrupted:
            return
        except TrenchcoatError as exc:
            log.warning("%s: rebuild failed, will retry at the next scan: %s", block, exc)
            return
        self._requested.pop(block, None)
        self._ids.pop(block, None)
        self._resume = [p for p in self._resume if p.block != block]
        self._unhealthy_since.pop(block, None)
        self.health[block] = Health.HEALTHY
