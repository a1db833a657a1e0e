"""The leader's needle repairs: what stores report damaged (their audit, or a read that
answered DATA_LOSS) is rewritten from a healthy replica.

Stores write ``damage/<volume>/<key>.<alt>/<machine>`` to etcd (``store/audit.py``). Each
leader tick reads them, lets ``policy.plan_needle_repairs`` decide, and asks each damaged
copy's store to pull the needle from a healthy replica (``StoreService.RepairNeedle``: the
bytes are verified at the source and again before they are written in place, durably).
A report is removed only once its copy is mended (or the volume left the hot tier), and
only if no newer report replaced it meanwhile; a new leader picks the rest up from etcd.
A source that answers DATA_LOSS is reported damaged in its turn; a needle damaged on
every replica is marked unrecoverable and left as it is (reads answer DATA_LOSS).
"""

from __future__ import annotations

import logging
import time

from directory import metrics, policy
from directory.model import ClusterMap
from directory.state import DirectoryState
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import DataLoss, FailedPrecondition, NotFound, TrenchcoatError
from trenchcoat.etcd import Record
from trenchcoat.store_types import DAMAGE_PREFIX, Finding, damage_key

log = logging.getLogger(__name__)

MAX_REPAIRS_PER_TICK = 64
"""Needles one tick has rewritten at most (the rest wait for the next tick)."""


async def damage_reports(state: DirectoryState) -> dict[tuple[int, int, int], dict[int, Record]]:
    """The stores' damage reports in etcd: (volume, key, alternate key) -> machine -> record."""
    records, _ = await state.etcd.get_prefix(DAMAGE_PREFIX)
    reports: dict[tuple[int, int, int], dict[int, Record]] = {}
    for key, record in records.items():
        try:
            volume, keys, machine = key.split("/")
            k, alt = keys.split(".")
            reports.setdefault((int(volume), int(k), int(alt)), {})[int(machine)] = record
        except ValueError:
            log.warning("ignoring a damage report under an unknown key %r", DAMAGE_PREFIX + key)
    return reports


async def damaged_needles(state: DirectoryState) -> list[policy.DamagedNeedle]:
    """Every needle some store reported damaged and that is not yet repaired."""
    return [policy.DamagedNeedle(v, k, a, frozenset(machines))
            for (v, k, a), machines in (await damage_reports(state)).items()]


class NeedleHealer:
    """Carries out ``policy.plan_needle_repairs`` for the leader."""

    def __init__(self, state: DirectoryState, stores: StoreClient) -> None:
        self._state = state
        self._stores = stores
        self._warned: set[tuple[int, int, int]] = set()
        self.unrecoverable: list[policy.DamagedNeedle] = []
        """The last tick's needles damaged on every replica."""
        self.mending: dict[int, set[int]] = {}
        """The last tick's machines per volume with a damaged needle a healthy replica can mend."""

    async def tick(self, cmap: ClusterMap) -> None:
        reports = await damage_reports(self._state)
        damaged = [policy.DamagedNeedle(v, k, a, frozenset(machines)) for (v, k, a), machines in reports.items()]
        plan = policy.plan_needle_repairs(cmap, damaged)
        for needle, machine_id in plan.stale:
            await self._forget(needle, machine_id, reports)
        for needle in plan.whole_volume:
            await self._state.mark_read_only(needle.volume_id, "an unreadable region in a replica", repair=True)
            for machine_id in needle.machines:
                await self._forget(needle, machine_id, reports)
            metrics.NEEDLE_REPAIRS.labels("whole_volume").inc()
        for repair in plan.repairs[:MAX_REPAIRS_PER_TICK]:
            await self._repair(cmap, repair, reports)
        for needle in plan.unrecoverable:
            ident = (needle.volume_id, needle.key, needle.alternate_key)
            if ident not in self._warned:
                self._warned.add(ident)
                log.error("logical volume %d: needle %#x/%d is damaged on every replica (stores %s); it cannot be "
                          "repaired and its reads answer DATA_LOSS", needle.volume_id, needle.key,
                          needle.alternate_key, sorted(needle.machines))
        self.unrecoverable = plan.unrecoverable
        lost = {(n.volume_id, n.key, n.alternate_key) for n in plan.unrecoverable}
        self.mending = {}
        for n in damaged:
            if (n.volume_id, n.key, n.alternate_key) not in lost:
                self.mending.setdefault(n.volume_id, set()).update(n.machines)
        metrics.UNRECOVERABLE_NEEDLES.set(len(plan.unrecoverable))
        metrics.DAMAGED_NEEDLES.set(len(damaged) - len(plan.unrecoverable))

    async def _repair(self, cmap: ClusterMap, repair: policy.NeedleRepair,
                      reports: dict[tuple[int, int, int], dict[int, Record]]) -> None:
        needle = repair.needle
        what = f"logical volume {needle.volume_id}: needle {needle.key:#x}/{needle.alternate_key} on store {repair.target}"
        for source in repair.sources:
            try:
                was_damaged, written = await self._stores.repair_needle(
                    cmap.address(repair.target), needle.volume_id, needle.key, needle.alternate_key,
                    cmap.address(source))
            except DataLoss as exc:
                log.warning("%s: source store %d is damaged too (%s); reported", what, source, exc)
                metrics.NEEDLE_REPAIRS.labels("source_damaged").inc()
                found = Finding(needle.volume_id, needle.key, needle.alternate_key, 0, 0, "damaged",
                                f"found by a repair: {exc}")
                await self._state.etcd.put(found.key_for(source), found.record(source, int(time.time() * 1000)))
                continue
            except (NotFound, FailedPrecondition) as exc:
                # The copies differ in more than this needle's bytes: the volume's repair compares them whole.
                log.warning("%s: %s; the volume is repaired as a whole", what, exc)
                metrics.NEEDLE_REPAIRS.labels("whole_volume").inc()
                await self._state.mark_read_only(needle.volume_id, "replicas differ at a damaged needle", repair=True)
                await self._forget(needle, repair.target, reports)
                return
            except TrenchcoatError as exc:
                log.warning("%s: repair from store %d failed, will retry: %s", what, source, exc)
                metrics.NEEDLE_REPAIRS.labels("failed").inc()
                return
            if was_damaged:
                log.info("%s rewritten from store %d (%d bytes)", what, source, written)
                metrics.NEEDLE_REPAIRED_BYTES.inc(written)
            metrics.NEEDLE_REPAIRS.labels("repaired" if was_damaged else "healthy").inc()
            await self._forget(needle, repair.target, reports)
            return

    async def _forget(self, needle: policy.DamagedNeedle, machine_id: int,
                      reports: dict[tuple[int, int, int], dict[int, Record]]) -> None:
        record = reports.get((needle.volume_id, needle.key, needle.alternate_key), {}).get(machine_id)
        if record is not None:
            await self._state.etcd.remove(
                damage_key(needle.volume_id, needle.key, needle.alternate_key, machine_id), record.mod_revision)
