"""The background work of the elected directory: election, pitchfork, fill, repair and
growth. Every directory process runs a ``Leader`` worker; only the one holding the
``leader`` key in etcd does the work, and another takes over within the lease TTL when
it dies.

Each tick (every ``probe_interval_s``):
1. **Pitchfork**: probe every store (health, status, a read of each volume's first
   bytes). A store failing ``probe_failures`` probes in a row, or whose liveness lease
   lapsed, is marked down and its volumes turn read-only and need repair; a store that
   passes again is re-admitted. A store that no longer reports a volume it should hold
   (a replaced disk) has that volume marked for repair; so has one whose replicas report
   different content digests two probes in a row with nothing changing in between.
2. **Fill**: a writable volume filled past ``full_ratio`` (or refused by a store) turns
   read-only; every volume's used bytes are recorded with when the stores reported them
   (``policy.fill_due`` says how often: small moves are batched, never for long).
3. **Repair**: a volume marked for repair whose stores are all up is first made
   read-only on every replica (no write can land during the copy); replicas whose content
   digests differ catch up with each other, moving only the needles and deletes that
   differ (a replica holding nothing is refilled whole through the export stream); once
   all digests match, the replicas accept writes again and the volume is writable.
4. **Needle repair**: needles the stores reported damaged (their audit, or a read) are
   rewritten from a healthy replica (``directory/healing.py``).
5. **Re-replication**: a store down past ``replace_after_s`` is lost for good: each of
   its volumes gets a new replica elsewhere (``directory/rereplication.py``); a copy the
   map no longer names (a lost store come back) is freed.
6. **Growth**: while fewer than ``min_writable_volumes`` are writable, create one with
   each replica on a different rack.

What to do is decided by the pure functions of ``directory/policy.py``; this module
gathers their inputs (probes, etcd) and carries their decisions out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from directory import metrics, policy
from directory.healing import NeedleHealer
from directory.migration import REQUESTED_REASON, Migration
from directory.model import ClusterMap, PlacementError, Replica, State, Store, Volume
from directory.rereplication import Rereplicator
from directory.state import DirectoryState
from trenchcoat.clients.store import StoreClient
from trenchcoat.config import DirectoryConfig
from trenchcoat.errors import Internal, NotFound, TrenchcoatError
from trenchcoat.etcd import LeasedKey
from trenchcoat.store_types import PhysicalVolume
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)

FRUITLESS_CATCHUPS = 3
"""Repair rounds of a volume in a row whose catch-ups moved nothing while its replicas
still differ, after which the differing copies are refilled whole from the source."""



class Leader(PeriodicWorker):
    """Election plus the leader's tick (every ``probe_interval_s`` while this process holds
    the election). ``refresh`` asks this process's copy of the map to be read again soon
    (after the leader changed it)."""

    def __init__(self, state: DirectoryState, stores: StoreClient, config: DirectoryConfig,
                 *, name: str, address: str, refresh: Callable[[], None],
                 migration: Migration | None = None) -> None:
        super().__init__("leader", config.probe_interval_s)
        self._state = state
        self._stores = stores
        self._config = config
        self._refresh = refresh
        self.election = LeasedKey(state.etcd, "leader", config.leader_ttl_s,
                                  lambda: {"name": name, "address": address})
        self._election_task: asyncio.Task[None] | None = None
        self._failures: dict[int, int] = {}
        self._reports: dict[int, dict[int, PhysicalVolume]] = {}
        self._previous_reports: dict[int, dict[int, PhysicalVolume]] = {}
        self._repairing: dict[int, asyncio.Task[None]] = {}
        self._settled: dict[int, float] = {}  # volume id -> when its repair made it writable
        self._fruitless: dict[int, int] = {}  # volume id -> repair rounds in a row that moved nothing
        self._probed_at = 0.0
        self._probed_unix_ms = 0
        """When the reports in ``_reports`` were asked for (wall clock: it is written to etcd)."""
        self._rng = random.Random()
        self.placement_error = ""
        """Why the last volume creation was refused ("" when it was not)."""
        self._migration = migration
        self._migrating: asyncio.Task[None] | None = None
        self.healer = NeedleHealer(state, stores)
        self.rereplicator = Rereplicator(state, stores, config, refresh, self.wake)

    async def run(self) -> None:
        self._election_task = asyncio.create_task(self.election.run(), name="directory:election")
        try:
            await super().run()
        finally:
            metrics.IS_LEADER.set(0)

    async def shutdown(self) -> None:
        """Ends the loop (waiting for a tick under way), the repairs and the move under way,
        then the election (its lease revoked: another directory leads at once)."""
        await super().shutdown()
        for task in self._repairing.values():
            task.cancel()
        if self._migrating is not None:
            self._migrating.cancel()
        await self.rereplicator.shutdown()
        await asyncio.gather(*self._repairing.values(), *([self._migrating] if self._migrating else []),
                             return_exceptions=True)
        await self.election.shutdown()
        if self._election_task is not None:
            await asyncio.gather(self._election_task, return_exceptions=True)
        metrics.IS_LEADER.set(0)

    async def tick(self) -> None:
        metrics.IS_LEADER.set(1 if self.election.held.is_set() else 0)
        if self.election.held.is_set():
            await self.lead()

    async def lead(self) -> None:
        """One pass of the leader's work."""
        await self.pitchfork(await self._state.read())
        cmap = await self._state.read()
        await self.fill(cmap)
        self.repair(cmap)
        await self.healer.tick(await self._state.read())
        await self.rereplicator.tick(await self._state.read(), self._reports, self._failures, self.healer.mending)
        await self.grow(await self._state.read())
        self.migrate(await self._state.read())
        self._refresh()

    # --- hot -> warm -------------------------------------------------------------------

    def migrate(self, cmap: ClusterMap) -> None:
        """Moves the next due volume into f4 a step further, in the background (an encode
        takes as long as the volume needs; the leader's tick goes on)."""
        if self._migration is None or (self._migrating is not None and not self._migrating.done()):
            return
        volume = self._migration.next(cmap)
        if volume is not None:
            self._migrating = asyncio.create_task(self._migrate_step(cmap, volume), name=f"migrate:{volume.id}")

    async def _migrate_step(self, cmap: ClusterMap, volume: Volume) -> None:
        assert self._migration is not None
        try:
            await self._migration.step(cmap, volume)
        except TrenchcoatError as exc:
            log.warning("logical volume %d: move into f4 will be retried: %s", volume.id, exc)
        self._refresh()

    # --- pitchfork ---------------------------------------------------------------------

    async def pitchfork(self, cmap: ClusterMap) -> None:
        self._probed_at = time.monotonic()
        self._probed_unix_ms = int(time.time() * 1000)
        stores = list(cmap.stores.values())
        results = await asyncio.gather(*(self._probe(s.machine_id, s.address, s.registered) for s in stores))
        probes = {p.machine_id: p for p in results}
        verdict = policy.judge_probes(cmap, probes, self._failures, self._config.probe_failures)
        self._failures = verdict.failures
        self._previous_reports = dict(self._reports)
        for probe in results:
            metrics.PROBES.labels("ok" if probe.volumes is not None else "failed").inc()
            if probe.volumes is None:
                self._reports.pop(probe.machine_id, None)
            else:
                self._reports[probe.machine_id] = dict(probe.volumes)
        for store, why in verdict.down:
            log.error("store %d (%s) is down: %s", store.machine_id, store.address, why)
            metrics.STORES_DOWN.inc()
            await self._state.set_machine(store, down=True, reason=why)
        for store in cmap.stores.values():
            if store.down and not store.down_ms and store.machine_id not in {s.machine_id for s in verdict.up}:
                await self._state.set_machine(store, down=True, reason=store.reason)  # since now: it was not recorded
        for store in verdict.up:
            if store.down:
                log.info("store %d (%s) is back; re-admitted", store.machine_id, store.address)
            await self._state.set_machine(store, down=False)
        for volume_id, why in verdict.read_only:
            await self._state.mark_read_only(volume_id, why, repair=True)
        for volume_id in policy.judge_contents(await self._state.read(), self._reports, self._previous_reports):
            log.warning("logical volume %d: its replicas' content digests differ; repairing", volume_id)
            await self._state.mark_read_only(volume_id, policy.CONTENTS_DIFFER, repair=True)

    async def _probe(self, machine_id: int, address: str, registered: bool) -> policy.Probe:
        if not registered:
            return policy.Probe(machine_id, None, policy.LEASE_LAPSED)
        try:
            return policy.Probe(machine_id, await self._stores.probe(address))
        except TrenchcoatError as exc:
            return policy.Probe(machine_id, None, str(exc))

    # --- fill --------------------------------------------------------------------------

    async def fill(self, cmap: ClusterMap) -> None:
        # Reports taken before a repair made a volume writable still say read-only.
        def fresh(volume_id: int) -> bool:
            return self._settled.get(volume_id, 0.0) < self._probed_at

        for fill in policy.judge_fill(cmap, self._reports, self._config.full_ratio, fresh,
                                      now_ms=self._probed_unix_ms, probe_interval_s=self._config.probe_interval_s):
            await self._state.update_volume(fill.volume_id, _applied(fill))
            if fill.read_only:
                log.info("logical volume %d read-only: %s", fill.volume_id, fill.read_only)

    # --- repair ------------------------------------------------------------------------

    def repair(self, cmap: ClusterMap) -> None:
        for volume in policy.repairable(cmap, self._repairing):
            task = asyncio.create_task(self._repair(cmap, volume), name=f"repair:{volume.id}")
            self._repairing[volume.id] = task
            task.add_done_callback(functools.partial(self._repair_done, volume.id))

    def _repair_done(self, volume_id: int, _task: asyncio.Task[None]) -> None:
        self._repairing.pop(volume_id, None)

    async def _repair(self, cmap: ClusterMap, volume: Volume) -> None:
        addresses = {r.machine_id: cmap.address(r.machine_id) for r in volume.replicas}
        try:
            # No write may land while replicas are compared and copied. A replica that does
            # not hold the volume gets it from the copy; one that cannot be reached fails
            # this round (retried next tick): it must not be mistaken for an empty one.
            for address in addresses.values():
                with contextlib.suppress(NotFound):  # VolumeNotFound: SetReadOnly names no needle
                    await self._stores.set_read_only(address, volume.id, True)
            reported_ms = int(time.time() * 1000)
            reports = await asyncio.gather(*(self._stores.status(a) for a in addresses.values()))
            copies = {m: report.get(volume.id) for m, report in zip(addresses, reports, strict=True)}
            plan = policy.plan_repair(copies)
            if plan is None:
                log.error("logical volume %d: no replica holds it; it cannot be repaired", volume.id)
                metrics.REPAIRS.labels("failed").inc()
                return
            if plan.wait:
                log.info("logical volume %d: a replica's digest is being recounted; compared again shortly", volume.id)
                return
            whole = set(plan.whole)
            if plan.targets and self._fruitless.get(volume.id, 0) >= FRUITLESS_CATCHUPS:
                whole = set(plan.targets)  # catching up does not settle them: copy the source whole
            moved = 0
            for puller, origin in plan.pulls:
                if puller in whole or origin in whole:
                    continue
                done = await self._stores.catch_up(addresses[puller], volume.id, addresses[origin])
                metrics.REPAIRS.labels("caught_up").inc()
                metrics.REPAIRED_BYTES.inc(done.bytes_received)
                moved += done.needles_copied + done.deletes_applied
                log.info("logical volume %d: store %d caught up from store %d: %d needles (%d bytes) copied, "
                         "%d deletes applied, %d conflicts", volume.id, puller, origin, done.needles_copied,
                         done.bytes_copied, done.deletes_applied, done.conflicts)
                if done.conflicts:
                    whole.add(puller if puller != plan.source else origin)
            for machine_id in sorted(whole):
                log.info("logical volume %d: refilling the copy on store %d from store %d",
                         volume.id, machine_id, plan.source)
                copied = await self._stores.repair(addresses[machine_id], volume.id, addresses[plan.source],
                                                   self._config.repair_chunk_bytes)
                metrics.REPAIRS.labels("ok").inc()
                metrics.REPAIRED_BYTES.inc(copied)
                moved += 1
            if plan.targets:
                self._fruitless[volume.id] = 0 if moved else self._fruitless.get(volume.id, 0) + 1
                if moved:
                    self.wake()  # compared again at once, from fresh reports
                return  # compared again on the next tick, from fresh reports
            self._fruitless.pop(volume.id, None)
            source = copies[plan.source]
            if source is None:
                raise Internal(f"logical volume {volume.id}: the repair's source {plan.source} holds no copy")
            state = policy.settled_state(source, volume.capacity_bytes, self._config.full_ratio,
                                         warm_requested=volume.warm_requested)
            if state is State.WRITABLE:
                for address in addresses.values():
                    await self._stores.set_read_only(address, volume.id, False)
            reason = "" if state is State.WRITABLE else (REQUESTED_REASON if volume.warm_requested else "full")

            def settle(v: Volume) -> Volume:
                return replace(v, repair=False, state=state, reason=reason, used_bytes=source.file_bytes,
                               used_ms=reported_ms)

            await self._state.update_volume(volume.id, settle)
            self._settled[volume.id] = time.monotonic()
            log.info("logical volume %d: all %d replicas match; %s", volume.id, len(addresses),
                     "writable again" if state is State.WRITABLE else f"read-only ({reason})")
            self._refresh()
        except TrenchcoatError as exc:
            metrics.REPAIRS.labels("failed").inc()
            log.warning("logical volume %d: repair failed, will retry: %s", volume.id, exc)

    # --- growth ------------------------------------------------------------------------

    async def grow(self, cmap: ClusterMap) -> None:
        metrics.WRITABLE.set(len(cmap.writable()))
        metrics.MIN_WRITABLE.set(self._config.min_writable_volumes)
        try:
            plans = policy.plan_growth(cmap, self._config.min_writable_volumes, self._config.replicas,
                                       self._failures, self._rng)
        except PlacementError as exc:
            if str(exc) != self.placement_error:
                log.error("cannot create volumes: %s", exc)
            metrics.PLACEMENT_FAILURES.inc()
            self.placement_error = str(exc)
            return
        self.placement_error = ""
        for chosen in plans:
            volume_id = await self._state.next_volume_id()
            created = await asyncio.gather(*(self._stores.create(s.address, volume_id) for s in chosen),
                                           return_exceptions=True)
            failed = [c for c in created if isinstance(c, BaseException)]
            if failed:
                log.warning("logical volume %d not created (ids are not reused): %s", volume_id, failed[0])
                await self._abandon_creation(volume_id, chosen)
                return
            volume = Volume(
                id=volume_id,
                replicas=tuple(Replica(s.machine_id, volume_id) for s in chosen),
                state=State.WRITABLE,
                capacity_bytes=min(c.capacity_bytes for c in created if isinstance(c, PhysicalVolume)),
                created_ms=int(time.time() * 1000),
            )
            await self._state.add_volume(volume)
            metrics.VOLUMES_CREATED.inc()
            log.info("created logical volume %d on stores %s (racks %s)", volume_id,
                     [s.machine_id for s in chosen], [s.rack for s in chosen])

    async def _abandon_creation(self, volume_id: int, chosen: list[Store]) -> None:
        """Frees the copies a failed creation made (a store that timed out may have made
        one too); whatever fails here is freed later as an unknown copy."""
        if not await self._state.abandon(volume_id):
            return
        for store in chosen:
            if await self.rereplicator.free_copy(store.address, store.machine_id, volume_id, "half-created"):
                metrics.ORPHANS_FREED.inc()


def _applied(fill: policy.Fill) -> Callable[[Volume], Volume | None]:
    """The change ``fill`` makes to a volume record (None: leave it, e.g. no longer writable)."""
    def change(v: Volume) -> Volume | None:
        if not fill.read_only:
            return replace(v, used_bytes=fill.used_bytes, used_ms=fill.used_ms)
        if v.state is not State.WRITABLE:
            return None
        return replace(v, state=State.READ_ONLY, used_bytes=fill.used_bytes, used_ms=fill.used_ms,
                       reason=fill.read_only, repair=v.repair or fill.repair)

    return change
