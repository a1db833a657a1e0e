"""The background work of the elected directory: election, pitchfork, fill, repair and
growth. Every directory process runs a ``Leader`` worker; only the one holding the
``leader`` key in etcd does the work, and another takes over within the lease TTL when
it dies.

Each tick (every ``probe_interval_s``):
1. **Pitchfork**: probe every store (health, status, a read of each volume's first
   bytes). A store failing ``probe_failures`` probes in a row, or whose liveness lease
   lapsed, is marked down and its volumes turn read-only and need repair; a store that
   passes again is re-admitted. A store that no longer reports a volume it should hold
   (a replaced disk) has that volume marked for repair.
2. **Fill**: a writable volume filled past ``full_ratio`` (or refused by a store) turns
   read-only.
3. **Repair**: a volume marked for repair whose stores are all up is first made
   read-only on every replica (no write can land during the copy); replicas that differ
   from the fullest one are refilled from it through the Store's export stream; once all
   match, the replicas accept writes again and the volume is writable.
4. **Growth**: while fewer than ``min_writable_volumes`` are writable, create one with
   each replica on a different rack.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace

from prometheus_client import Counter, Gauge

from directory.model import ClusterMap, PlacementError, Replica, State, Volume, place
from directory.state import DirectoryState
from directory.stores import PhysicalVolume, StoreClients
from trenchcoat.config import DirectoryConfig
from trenchcoat.errors import TrenchcoatError, Unavailable
from trenchcoat.etcd import LeasedKey

log = logging.getLogger(__name__)

IS_LEADER = Gauge("trenchcoat_directory_is_leader", "1 while this directory process is the elected leader.")
PROBES = Counter("trenchcoat_directory_probes_total", "Store probes by outcome.", ["outcome"])
STORES_DOWN = Counter("trenchcoat_directory_stores_marked_down_total", "Stores marked down by the pitchfork.")
VOLUMES_CREATED = Counter("trenchcoat_directory_volumes_created_total", "Logical volumes created.")
PLACEMENT_FAILURES = Counter(
    "trenchcoat_directory_placement_failures_total", "Volume creations refused for want of racks."
)
REPAIRS = Counter("trenchcoat_directory_repairs_total", "Replica repairs by outcome.", ["outcome"])
REPAIRED_BYTES = Counter("trenchcoat_directory_repaired_bytes_total", "Bytes copied by replica repairs.")


class Leader:
    """Election plus the leader's tick."""

    def __init__(self, state: DirectoryState, clients: StoreClients, config: DirectoryConfig,
                 *, name: str, address: str, refresh: asyncio.Event) -> None:
        self._state = state
        self._clients = clients
        self._config = config
        self._refresh = refresh
        self.election = LeasedKey(state.etcd, "leader", config.leader_ttl_s,
                                  lambda: {"name": name, "address": address})
        self._stop = asyncio.Event()
        self._failures: dict[int, int] = {}
        self._reports: dict[int, dict[int, PhysicalVolume]] = {}
        self._repairing: dict[int, asyncio.Task[None]] = {}
        self._settled: dict[int, float] = {}  # volume id -> when its repair made it writable
        self._probed_at = 0.0
        self._rng = random.Random()
        self.placement_error = ""
        """Why the last volume creation was refused ("" when it was not)."""

    async def run(self) -> None:
        election = asyncio.create_task(self.election.run(), name="directory:election")
        try:
            while not self._stop.is_set():
                IS_LEADER.set(1 if self.election.held.is_set() else 0)
                if self.election.held.is_set():
                    try:
                        await self.tick()
                    except TrenchcoatError as exc:
                        log.warning("leader tick: %s", exc)
                try:
                    await asyncio.wait_for(self._stop.wait(), self._config.probe_interval_s)
                except TimeoutError:
                    pass
        finally:
            election.cancel()
            for task in self._repairing.values():
                task.cancel()
            await self.election.shutdown()
            IS_LEADER.set(0)

    async def shutdown(self) -> None:
        self._stop.set()

    async def tick(self) -> None:
        await self.pitchfork(await self._state.read())
        cmap = await self._state.read()
        await self.fill(cmap)
        self.repair(cmap)
        await self.grow(await self._state.read())
        self._refresh.set()

    # --- pitchfork ---------------------------------------------------------------------

    async def pitchfork(self, cmap: ClusterMap) -> None:
        self._probed_at = time.monotonic()
        stores = list(cmap.stores.values())
        results = await asyncio.gather(
            *(self._clients.probe(s.address) if s.registered else _lapsed() for s in stores),
            return_exceptions=True,
        )
        for store, result in zip(stores, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, TrenchcoatError):
                raise result
            if isinstance(result, TrenchcoatError):
                PROBES.labels("failed").inc()
                self._reports.pop(store.machine_id, None)
                failures = self._failures[store.machine_id] = (
                    self._failures.get(store.machine_id, 0) + 1 if store.registered else self._config.probe_failures
                )
                if failures >= self._config.probe_failures and not store.down:
                    why = "its liveness lease lapsed" if not store.registered else str(result)
                    log.error("store %d (%s) is down: %s", store.machine_id, store.address, why)
                    STORES_DOWN.inc()
                    await self._state.set_machine(store, down=True, reason=why)
                    await self._flip_volumes_of(cmap, store.machine_id, f"store {store.machine_id} is down")
                continue
            PROBES.labels("ok").inc()
            self._failures[store.machine_id] = 0
            self._reports[store.machine_id] = result
            if store.down or not store.recorded:
                if store.down:
                    log.info("store %d (%s) is back; re-admitted", store.machine_id, store.address)
                await self._state.set_machine(store, down=False)
            for volume in cmap.volumes.values():
                held = any(r.machine_id == store.machine_id for r in volume.replicas)
                if held and volume.id not in result and not volume.repair:
                    await self._state.mark_read_only(
                        volume.id, f"store {store.machine_id} lost its copy", repair=True)

    async def _flip_volumes_of(self, cmap: ClusterMap, machine_id: int, reason: str) -> None:
        for volume in cmap.volumes.values():
            if any(r.machine_id == machine_id for r in volume.replicas) and volume.state is State.WRITABLE:
                await self._state.mark_read_only(volume.id, reason, repair=True)

    # --- fill --------------------------------------------------------------------------

    async def fill(self, cmap: ClusterMap) -> None:
        for volume in cmap.volumes.values():
            reports = [self._reports.get(r.machine_id, {}).get(volume.id) for r in volume.replicas]
            known = [p for p in reports if p is not None]
            if not known:
                continue
            used = max(p.file_bytes for p in known)
            full = used >= self._config.full_ratio * volume.capacity_bytes
            # Reports taken before a repair made the volume writable still say read-only.
            fresh = self._settled.get(volume.id, 0.0) < self._probed_at
            refused = volume.state is State.WRITABLE and not volume.repair and fresh and any(p.read_only for p in known)
            if full or refused:
                if volume.state is State.WRITABLE:
                    why = "full" if full else "a replica refuses writes"
                    await self._state.update_volume(volume.id, lambda v, u=used, w=why: replace(
                        v, state=State.READ_ONLY, used_bytes=u, reason=w, repair=v.repair or w != "full"))
                    log.info("logical volume %d read-only: %s", volume.id, why)
            elif abs(used - volume.used_bytes) >= max(1, volume.capacity_bytes // 1000):
                await self._state.update_volume(volume.id, lambda v, u=used: replace(v, used_bytes=u))

    # --- repair ------------------------------------------------------------------------

    def repair(self, cmap: ClusterMap) -> None:
        for volume in cmap.volumes.values():
            if not volume.repair or volume.id in self._repairing:
                continue
            if not all(cmap.alive(r.machine_id) for r in volume.replicas):
                continue
            task = asyncio.create_task(self._repair(cmap, volume), name=f"repair:{volume.id}")
            self._repairing[volume.id] = task
            task.add_done_callback(lambda _t, vid=volume.id: self._repairing.pop(vid, None))

    async def _repair(self, cmap: ClusterMap, volume: Volume) -> None:
        addresses = {r.machine_id: cmap.address(r.machine_id) for r in volume.replicas}
        try:
            # No write may land while replicas are compared and copied.
            for replica in volume.replicas:
                try:
                    await self._clients.set_read_only(addresses[replica.machine_id], volume.id, True)
                except Unavailable:
                    pass  # a replica without the volume: it is created by the copy
            reports = await asyncio.gather(*(self._clients.status(a) for a in addresses.values()))
            copies = {m: report.get(volume.id) for m, report in zip(addresses, reports, strict=True)}
            present = {m: p for m, p in copies.items() if p is not None}
            if not present:
                log.error("logical volume %d: no replica holds it; it cannot be repaired", volume.id)
                return
            source_id, source = max(present.items(), key=lambda kv: (kv[1].file_bytes, kv[1].needles))
            targets = [m for m, p in copies.items() if p is None or not p.same_contents(source)]
            for machine_id in targets:
                log.info("logical volume %d: refilling the copy on store %d from store %d",
                         volume.id, machine_id, source_id)
                copied = await self._clients.repair(addresses[machine_id], volume.id, addresses[source_id],
                                                    self._config.repair_chunk_bytes)
                REPAIRS.labels("ok").inc()
                REPAIRED_BYTES.inc(copied)
            if targets:
                return  # compared again on the next tick, from fresh reports
            full = source.file_bytes >= self._config.full_ratio * volume.capacity_bytes
            if not full:
                for address in addresses.values():
                    await self._clients.set_read_only(address, volume.id, False)

            def settle(v: Volume) -> Volume:
                if full:
                    return replace(v, repair=False, state=State.READ_ONLY, reason="full", used_bytes=source.file_bytes)
                return replace(v, repair=False, state=State.WRITABLE, reason="", used_bytes=source.file_bytes)

            await self._state.update_volume(volume.id, settle)
            self._settled[volume.id] = time.monotonic()
            log.info("logical volume %d: all %d replicas match; %s", volume.id, len(addresses),
                     "read-only (full)" if full else "writable again")
            self._refresh.set()
        except TrenchcoatError as exc:
            REPAIRS.labels("failed").inc()
            log.warning("logical volume %d: repair failed, will retry: %s", volume.id, exc)

    # --- growth ------------------------------------------------------------------------

    async def grow(self, cmap: ClusterMap) -> None:
        writable = len(cmap.writable())  # any room counts; fill() retires full ones
        for _ in range(self._config.min_writable_volumes - writable):
            try:
                healthy = [s for s in cmap.stores.values() if not self._failures.get(s.machine_id)]
                chosen = place(healthy, self._config.replicas, self._rng)
            except PlacementError as exc:
                if str(exc) != self.placement_error:
                    log.error("cannot create volumes: %s", exc)
                PLACEMENT_FAILURES.inc()
                self.placement_error = str(exc)
                return
            self.placement_error = ""
            volume_id = await self._state.next_volume_id()
            capacities = await asyncio.gather(*(self._clients.create(s.address, volume_id) for s in chosen),
                                              return_exceptions=True)
            failed = [c for c in capacities if isinstance(c, BaseException)]
            if failed:
                log.warning("logical volume %d not created (ids are not reused): %s", volume_id, failed[0])
                return
            volume = Volume(
                id=volume_id,
                replicas=tuple(Replica(s.machine_id, volume_id) for s in chosen),
                state=State.WRITABLE,
                capacity_bytes=min(int(c) for c in capacities),  # type: ignore[call-overload]
                created_ms=int(time.time() * 1000),
            )
            await self._state.add_volume(volume)
            VOLUMES_CREATED.inc()
            log.info("created logical volume %d on stores %s (racks %s)", volume_id,
                     [s.machine_id for s in chosen], [s.rack for s in chosen])


async def _lapsed() -> dict[int, PhysicalVolume]:
    raise Unavailable("liveness lease lapsed")
