"""The leader's replacement of copies on stores lost for good, and the freeing of those
copies if their store comes back.

A store down for ``directory.replace_after_s`` is lost (``policy.lost_stores``). Each hot
volume it held gets a new replica (``policy.plan_replacements``: a live store with room
on a rack the volume does not use yet, the fullest live replica as the source). The
intent is written on the volume's record first (``Volume.replacing``), so a leader that
dies mid-copy leaves it for the next one. The new store copies the source's file
(``RepairVolume``, throttled to ``directory.rereplicate_bytes_per_s``), the copy is
verified by content digest (a delete that reached the source meanwhile is caught up),
and only then does the map name the new store in the lost one's place. The volume stays
marked for repair, so the leader's repair compares every replica and makes it writable
again if it was. A copy on a store the map no longer names for its volume is freed
(``policy.stale_copies``: only while every named replica is up and matches), which is
what happens to a lost store's copies when it comes back.

A copy of a volume id the map never held (``policy.unknown_copies``: a creation that
failed part way, when one store timed out or died after the others had made theirs) is
freed once it has been unknown for two leader TTLs (a creation another leader began may
still finish meanwhile) and its id is abandoned in etcd (``DirectoryState.abandon``,
atomic with adding the volume: a late creation can no longer put it in the map). Only
empty copies of ids this cluster handed out are freed; any other unknown copy is
counted and logged for an operator, never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from directory import metrics, policy
from directory.model import ClusterMap, Replacing, Replica, Volume
from directory.state import DirectoryState
from trenchcoat.clients.store import StoreClient
from trenchcoat.config import DirectoryConfig
from trenchcoat.errors import Internal, NotFound, TrenchcoatError
from trenchcoat.store_types import PhysicalVolume

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
"""Chunk of a re-replication's throttled copy: smaller pieces than a repair's, so each
message the source sends and the new store writes holds their event loops for less, and
live uploads on both keep their latency (bench.heal: upload p99 during a copy at 32 MiB/s
1.5-1.6x idle with 256 KiB chunks, 1.7-1.9x with 1 MiB)."""


class Rereplicator:
    """Carries out the re-replication decisions for the leader, one copy at a time."""

    def __init__(self, state: DirectoryState, stores: StoreClient, config: DirectoryConfig,
                 refresh: Callable[[], None], wake: Callable[[], None]) -> None:
        """``wake``: runs the leader's next tick now (the repair that follows a swap, the
        next volume's copy), not at the end of its interval."""
        self._state = state
        self._wake = wake
        self._stores = stores
        self._config = config
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None
        self._unknown_since: dict[tuple[int, int], float] = {}
        """(machine, volume) of each copy the map does not know: when it was first seen (monotonic)."""
        self._orphan_grace_s = 2.0 * config.leader_ttl_s
        self._told: set[tuple[int, int]] = set()
        """Unknown copies holding needles that were logged already."""

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def tick(self, cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]],
                   failures: Mapping[int, int], damaged: Mapping[int, set[int]]) -> None:
        """``damaged``: per volume, the machines whose copy has a needle awaiting repair
        (not a source until it is mended)."""
        metrics.UNDER_REPLICATED.set(len(policy.under_replicated(cmap)))
        await self._free_stale(cmap, reports)
        await self._free_orphans(cmap, reports)
        if self.busy:
            return
        lost = policy.lost_stores(cmap, int(time.time() * 1000), self._config.replace_after_s)
        under_way = [v for v in cmap.volumes.values() if v.replacing is not None]
        metrics.REREPLICATING.set(len(under_way))
        for volume in under_way:
            assert volume.replacing is not None
            if volume.replacing.lost not in lost:
                await self._abandon(volume, "its store is back")
                return
            if cmap.alive(volume.replacing.new) and cmap.alive(volume.replacing.source):
                self._start(cmap, volume, volume.replacing)
                return
            await self._abandon(volume, "the new store or the source is down; placing it again")
            return
        plans = policy.plan_replacements(cmap, reports, lost, failures, damaged)
        if plans:
            volume, replacing = plans[0]
            updated = await self._state.update_volume(volume.id, _intend(replacing))
            if updated.replacing == replacing:
                log.info("logical volume %d: replacing its copy on lost store %d with a new one on store %d "
                         "(rack %s), copied from store %d", volume.id, replacing.lost, replacing.new,
                         cmap.rack(replacing.new), replacing.source)
                self._start(cmap, updated, replacing)

    def _start(self, cmap: ClusterMap, volume: Volume, replacing: Replacing) -> None:
        self._task = asyncio.create_task(self._copy(cmap, volume, replacing), name=f"rereplicate:{volume.id}")

    async def _copy(self, cmap: ClusterMap, volume: Volume, replacing: Replacing) -> None:
        new, source = cmap.address(replacing.new), cmap.address(replacing.source)
        try:
            copied = await self._stores.repair(new, volume.id, source, CHUNK_BYTES,
                                               bytes_per_s=self._config.rereplicate_bytes_per_s)
            metrics.REREPLICATED_BYTES.inc(copied)
            for _ in range(3):
                theirs = (await self._stores.status(source, volume.id))[volume.id]
                ours = (await self._stores.status(new, volume.id))[volume.id]
                if ours.same_contents(theirs):
                    break
                await self._stores.catch_up(new, volume.id, source)  # deletes that reached the source meanwhile
            else:
                raise Internal(f"logical volume {volume.id}: the new copy on store {replacing.new} still differs "
                               f"from store {replacing.source}'s after catching up")

            def swap(v: Volume) -> Volume | None:
                if v.replacing != replacing:
                    return None  # another leader changed course meanwhile
                replicas = tuple(Replica(replacing.new, r.volume_id) if r.machine_id == replacing.lost else r
                                 for r in v.replicas)
                return replace(v, replicas=replicas, replacing=None, repair=True)

            updated = await self._state.update_volume(volume.id, swap)
            if updated.replacing is None and any(r.machine_id == replacing.new for r in updated.replicas):
                metrics.REREPLICATIONS.labels("done").inc()
                log.info("logical volume %d: store %d replaces lost store %d (%d bytes copied, digests equal)",
                         volume.id, replacing.new, replacing.lost, copied)
                self._refresh()
                self._wake()
        except TrenchcoatError as exc:
            metrics.REREPLICATIONS.labels("failed").inc()
            log.warning("logical volume %d: new replica on store %d failed, will retry: %s", volume.id,
                        replacing.new, exc)

    async def _abandon(self, volume: Volume, why: str) -> None:
        assert volume.replacing is not None
        replacing = volume.replacing

        def drop(v: Volume) -> Volume | None:
            return replace(v, replacing=None) if v.replacing == replacing else None

        await self._state.update_volume(volume.id, drop)
        metrics.REREPLICATIONS.labels("abandoned").inc()
        log.info("logical volume %d: replacing lost store %d's copy abandoned: %s", volume.id, replacing.lost, why)

    async def _free_stale(self, cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]]) -> None:
        for machine_id, volume_id in policy.stale_copies(cmap, reports):
            if await self.free_copy(cmap.address(machine_id), machine_id, volume_id, "stale"):
                metrics.STALE_FREED.inc()
                log.info("store %d: its copy of logical volume %d freed (the volume's replicas are elsewhere now)",
                         machine_id, volume_id)

    async def _free_orphans(self, cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]]) -> None:
        now = time.monotonic()
        unknown = policy.unknown_copies(cmap, reports)
        since = {(m, c.volume_id): self._unknown_since.get((m, c.volume_id), now) for m, c in unknown}
        self._unknown_since = since
        taken: int | None = None
        kept = 0
        for machine_id, copy in unknown:
            if now - since[machine_id, copy.volume_id] < self._orphan_grace_s:
                continue
            if taken is None:
                taken = await self._state.volume_ids_taken()
            if copy.needles or copy.deleted or copy.volume_id > taken:
                kept += 1
                if (machine_id, copy.volume_id) not in self._told:
                    self._told.add((machine_id, copy.volume_id))
                    log.error("store %d holds a copy of logical volume %d, which the map does not know (%s): "
                              "left alone; free it with the store's FreeVolume once nothing in it is needed",
                              machine_id, copy.volume_id,
                              f"{copy.needles} live needle(s)" if copy.volume_id <= taken
                              else f"an id this cluster never handed out, only 1-{taken}")
                continue
            if not await self._state.abandon(copy.volume_id):
                continue  # it is in the map after all: the next tick's map has it
            if await self.free_copy(cmap.address(machine_id), machine_id, copy.volume_id, "orphaned"):
                metrics.ORPHANS_FREED.inc()
                log.info("store %d: its empty copy of logical volume %d freed (the volume's creation failed "
                         "part way; the id is abandoned)", machine_id, copy.volume_id)
        metrics.UNKNOWN_COPIES.set(kept)

    async def free_copy(self, address: str, machine_id: int, volume_id: int, what: str) -> bool:
        """Seals and frees a store's copy of a volume; False if it was gone already, or
        the store failed (logged: the next tick tries again)."""
        try:
            with contextlib.suppress(NotFound):
                await self._stores.set_read_only(address, volume_id, True)
            return bool(await self._stores.free_volume(address, volume_id))
        except TrenchcoatError as exc:
            log.warning("store %d: freeing its %s copy of logical volume %d failed, will retry: %s",
                        machine_id, what, volume_id, exc)
            return False

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _intend(replacing: Replacing) -> Callable[[Volume], Volume | None]:
    def change(v: Volume) -> Volume | None:
        return replace(v, replacing=replacing) if v.replacing is None else None

    return change
