"""The leader's decisions, as pure functions of the cluster map and what the stores
reported: which stores are down, which volumes turn read-only, which replicas a repair
refills from which source, what growth creates. ``directory/leader.py`` gathers the
inputs (probes, etcd) and carries the decisions out; nothing here does I/O, so every rule
is tested without processes (``tests/unit/directory/test_policy.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace

from directory.model import ClusterMap, Replacing, State, Store, Volume, place
from trenchcoat.store_types import PhysicalVolume

LEASE_LAPSED = "its liveness lease lapsed"


# --- pitchfork ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """What one probe of a store found: its volumes, or why it failed."""

    machine_id: int
    volumes: Mapping[int, PhysicalVolume] | None
    """None when the probe failed."""
    error: str = ""


@dataclass(slots=True)
class Pitchfork:
    """The outcome of one round of probes."""

    failures: dict[int, int] = field(default_factory=dict)
    """Consecutive failed probes of each store after this round."""
    down: list[tuple[Store, str]] = field(default_factory=list)
    """Stores to mark down now, with why."""
    up: list[Store] = field(default_factory=list)
    """Stores to record as up: back after being down, or seen for the first time."""
    read_only: list[tuple[int, str]] = field(default_factory=list)
    """Volumes to turn read-only, needing repair, with why."""


def judge_probes(cmap: ClusterMap, probes: Mapping[int, Probe], failures: Mapping[int, int],
                 probe_failures: int) -> Pitchfork:
    """A store whose lease lapsed is down at once; one that fails ``probe_failures`` probes
    in a row is down; its writable volumes turn read-only (they may have missed writes).
    A store passing again is up. A store that no longer holds a volume the map gives it (a
    replaced disk) has that volume marked for repair."""
    out = Pitchfork()
    flipped: set[int] = set()
    for machine_id, store in cmap.stores.items():
        probe = probes.get(machine_id)
        if probe is None:
            continue
        if probe.volumes is None:
            count = failures.get(machine_id, 0) + 1 if store.registered else probe_failures
            out.failures[machine_id] = count
            if count >= probe_failures and not store.down:
                why = LEASE_LAPSED if not store.registered else probe.error
                out.down.append((store, why))
                for volume in _held_by(cmap, machine_id):
                    if volume.state is State.WRITABLE and volume.id not in flipped:
                        flipped.add(volume.id)
                        out.read_only.append((volume.id, f"store {machine_id} is down"))
            continue
        out.failures[machine_id] = 0
        if store.down or not store.recorded:
            out.up.append(store)
        for volume in _held_by(cmap, machine_id):
            if volume.id not in probe.volumes and not volume.repair and volume.id not in flipped:
                flipped.add(volume.id)
                out.read_only.append((volume.id, f"store {machine_id} lost its copy"))
    return out


def _held_by(cmap: ClusterMap, machine_id: int) -> list[Volume]:
    return [v for v in cmap.volumes.values() if any(r.machine_id == machine_id for r in v.replicas)]


# --- fill ---------------------------------------------------------------------------------


FILL_STEP = 1000
"""A fill that moved by capacity / FILL_STEP (a thousandth) is recorded at the next probe."""
FILL_SETTLE_PROBES = 3
"""A smaller move is recorded once the figure on record is this many probe intervals old:
a small volume's fill shows within seconds of its uploads (a thousandth of a GiB volume is
a MiB, more than many photos), while a trickle of uploads costs one etcd write per volume
every few probes, not one per probe."""
FILL_REFRESH_PROBES = 30
"""A figure that did not move is stamped again this many probe intervals after it was
recorded (a minute by default), so the age ``trenchcoat volumes`` shows is how long ago the
stores last confirmed it: an age well past this means they were not heard (no leader, or
the replicas' stores do not answer), not that the volume is quiet."""


@dataclass(frozen=True, slots=True)
class Fill:
    """A change to one volume's record from its replicas' reports."""

    volume_id: int
    used_bytes: int
    used_ms: int
    """When the reports were taken (ms since the epoch): the record's ``used_ms``."""
    read_only: str = ""
    """Why it turns read-only ("full", or "a replica refuses writes"); "" to only record
    its fill."""

    @property
    def repair(self) -> bool:
        """Whether its replicas may differ (anything but full)."""
        return bool(self.read_only) and self.read_only != "full"


def judge_fill(cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]], full_ratio: float,
               fresh: Callable[[int], bool], *, now_ms: int, probe_interval_s: float) -> list[Fill]:
    """A writable volume whose fullest replica passed ``full_ratio`` of capacity turns
    read-only; so does one a replica refuses writes to (when its reports are ``fresh``:
    taken after a repair last made it writable). Otherwise its used bytes, reported at
    ``now_ms``, are recorded when ``fill_due`` says so."""
    out = []
    for volume in cmap.volumes.values():
        known = [p for r in volume.replicas if (p := reports.get(r.machine_id, {}).get(volume.id)) is not None]
        if not known:
            continue
        used = max(p.file_bytes for p in known)
        full = used >= full_ratio * volume.capacity_bytes
        refused = (volume.state is State.WRITABLE and not volume.repair and fresh(volume.id)
                   and any(p.read_only for p in known))
        if full or refused:
            if volume.state is State.WRITABLE:
                out.append(Fill(volume.id, used, now_ms, "full" if full else "a replica refuses writes"))
        elif fill_due(volume, used, now_ms, probe_interval_s):
            out.append(Fill(volume.id, used, now_ms))
    return out


def fill_due(volume: Volume, used: int, now_ms: int, probe_interval_s: float) -> bool:
    """Whether ``used``, what the volume's stores report at ``now_ms``, is to be written to
    its record: a move of a thousandth of capacity at once, any smaller move once the
    record is ``FILL_SETTLE_PROBES`` probe intervals old, an unchanged figure once it is
    ``FILL_REFRESH_PROBES`` old (stamped as confirmed). A record stamped later than
    ``now_ms`` (another leader's clock ahead of this one's) is due at once, so it cannot
    hold small moves back until this clock catches up."""
    age_ms = now_ms - volume.used_ms
    interval_ms = probe_interval_s * 1000
    if age_ms < 0:
        return True
    if used == volume.used_bytes:
        return age_ms >= FILL_REFRESH_PROBES * interval_ms
    if abs(used - volume.used_bytes) >= max(1, volume.capacity_bytes // FILL_STEP):
        return True
    return age_ms >= FILL_SETTLE_PROBES * interval_ms


# --- contents -----------------------------------------------------------------------------


CONTENTS_DIFFER = "replicas differ in content"


def judge_contents(cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]],
                   previous: Mapping[int, Mapping[int, PhysicalVolume]]) -> list[int]:
    """Hot volumes (not already under repair) whose replicas report different content
    digests in two probes in a row, with no replica's copy changing in between: a real
    difference (a missed write or delete), not writes landing on one replica a moment
    before another. Each is to be marked for repair."""
    out = []
    for volume in cmap.volumes.values():
        if volume.repair or volume.state in (State.SEALED, State.WARM):
            continue
        now = [reports.get(r.machine_id, {}).get(volume.id) for r in volume.replicas]
        before = [previous.get(r.machine_id, {}).get(volume.id) for r in volume.replicas]
        if any(p is None or not p.digest or not p.digest_settled for p in now):
            continue  # a missing copy is the pitchfork's to judge; an unsettled digest is compared later
        if len({p.digest for p in now if p is not None}) == 1:
            continue
        if all(b is not None and n is not None and (b.digest, b.file_bytes) == (n.digest, n.file_bytes)
               for b, n in zip(before, now, strict=True)):
            out.append(volume.id)
    return out


# --- repair -------------------------------------------------------------------------------


def repairable(cmap: ClusterMap, in_progress: Container[int]) -> list[Volume]:
    """Volumes marked for repair, not being repaired, whose every replica's store is up."""
    return [v for v in cmap.volumes.values()
            if v.repair and v.id not in in_progress and all(cmap.alive(r.machine_id) for r in v.replicas)]


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """How a volume's replicas are brought to the same contents."""

    source: int
    """Machine holding the copy to spread: the fullest (bytes), then the one with the most
    deletions flagged, then the most needles."""
    targets: tuple[int, ...]
    """Machines whose copy is missing or differs from the source's (none: all match)."""
    pulls: tuple[tuple[int, int], ...] = ()
    """Catch-ups in order, (machine that pulls, machine it pulls from): only what differs
    moves. The source first takes what each other copy has (its union), then each other
    copy takes what the source has; a delete made anywhere ends up everywhere."""
    whole: tuple[int, ...] = ()
    """Machines refilled by a whole copy of the source's file: one holding no copy, or one
    whose digest another store version cannot give."""
    wait: bool = False
    """A copy's digest is still being recounted after its store's restart: compare later."""


def plan_repair(copies: Mapping[int, PhysicalVolume | None]) -> RepairPlan | None:
    """``copies``: each replica's report of the volume (None: it does not hold it), taken
    while every replica refuses writes. None when no replica holds the volume.

    The fullest copy is the source: copies diverge in bytes only by writes that reached
    some replicas and not others, and none of those was acknowledged, while every
    acknowledged write is on every replica; the fullest therefore holds every
    acknowledged needle (and spreading its extra, unacknowledged ones harms nothing).
    Copies of the same size may differ in delete flags (a replica down during a delete
    missed its flag): the one with more flags wins, so a repair does not bring a deleted
    needle back.

    Copies that report a content digest are compared by it and brought together by
    catch-ups that move only what differs (the union of needles and of deletes); a copy
    that is missing is refilled whole. Copies of stores that report no digest are
    refilled whole from the source, every target keeping the flags of the copy it
    replaces (``VolumeSet.restore``)."""
    present = {m: p for m, p in copies.items() if p is not None}
    if not present:
        return None
    source, best = max(present.items(), key=lambda kv: (kv[1].file_bytes, kv[1].deleted, kv[1].needles, -kv[0]))
    targets = tuple(m for m, p in copies.items() if p is None or not p.same_contents(best))
    missing = tuple(m for m in targets if copies[m] is None)
    differing = tuple(m for m in targets if copies[m] is not None)
    if any(p.digest and not p.digest_settled for p in present.values()):
        return RepairPlan(source, targets, wait=True)
    if not best.digest or any(not present[m].digest for m in differing):
        return RepairPlan(source, targets, whole=targets)
    pulls = tuple((source, m) for m in differing) + tuple((m, source) for m in differing)
    return RepairPlan(source, targets, pulls=pulls, whole=missing)


def settled_state(source: PhysicalVolume, capacity_bytes: int, full_ratio: float, *,
                  warm_requested: bool = False) -> State:
    """The state of a volume whose replicas all match ``source``: writable again, unless it
    is full or an operator asked for it in f4 (``trenchcoat migrate``: a repair must not
    undo that request by taking writes again)."""
    if warm_requested or source.file_bytes >= full_ratio * capacity_bytes:
        return State.READ_ONLY
    return State.WRITABLE


# --- growth -------------------------------------------------------------------------------


DEFAULT_VOLUME_BYTES = 1 << 30
"""Room one new volume is assumed to take on a store before any volume exists to tell."""


def plan_growth(cmap: ClusterMap, min_writable: int, copies: int, failures: Mapping[int, int],
                rng: random.Random) -> list[list[Store]]:
    """The stores of each volume to create so ``min_writable`` volumes are writable: each
    volume's replicas on distinct racks, only on stores without a failed probe, the
    freest store of each rack first, counting the room each planned volume takes (so
    several new volumes spread over a rack's stores). Raises PlacementError when the
    healthy stores span fewer racks than ``copies``."""
    needed = min_writable - len(cmap.writable())
    if needed <= 0:
        return []
    size = max((v.capacity_bytes for v in cmap.volumes.values()), default=DEFAULT_VOLUME_BYTES)
    healthy = {s.machine_id: s for s in cmap.stores.values() if not failures.get(s.machine_id)}
    plans = []
    for _ in range(needed):
        chosen = place(healthy.values(), copies, rng)
        plans.append(chosen)
        for store in chosen:
            healthy[store.machine_id] = replace(store, free_bytes=store.free_bytes - size)
    return plans


# --- needle repair ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DamagedNeedle:
    """One needle some stores reported damaged (``damage/<volume>/<key>.<alt>/<machine>``)."""

    volume_id: int
    key: int
    alternate_key: int
    machines: frozenset[int]
    """Stores that reported their copy of it damaged."""


@dataclass(frozen=True, slots=True)
class NeedleRepair:
    """Rewrite ``target``'s copy of the needle from the first of ``sources`` that verifies."""

    needle: DamagedNeedle
    target: int
    sources: tuple[int, ...]


@dataclass(slots=True)
class NeedlePlan:
    repairs: list[NeedleRepair] = field(default_factory=list)
    unrecoverable: list[DamagedNeedle] = field(default_factory=list)
    """Damaged on every replica: never "repaired" with wrong bytes; listed and alerted on."""
    whole_volume: list[DamagedNeedle] = field(default_factory=list)
    """Damage no needle repair can mend (an unreadable region, key unknown): the volume's
    repair copies a whole replica."""
    stale: list[tuple[DamagedNeedle, int]] = field(default_factory=list)
    """Reports to forget: (needle, machine) of a volume gone from the hot tier, or of a
    store no longer holding it."""


def plan_needle_repairs(cmap: ClusterMap, damaged: Iterable[DamagedNeedle]) -> NeedlePlan:
    """What to do about each damaged needle. A source is a replica whose store is up and
    that did not report the needle damaged; the target's own copy is never its source, so
    a needle damaged everywhere is never rewritten (its reads stay DATA_LOSS)."""
    plan = NeedlePlan()
    for needle in damaged:
        volume = cmap.volumes.get(needle.volume_id)
        replicas = [r.machine_id for r in volume.replicas] if volume is not None and volume.state is not State.WARM else []
        for machine_id in sorted(needle.machines - set(replicas)):
            plan.stale.append((needle, machine_id))
        targets = sorted(needle.machines & set(replicas))
        if not targets:
            continue
        if needle.key == 0:
            plan.whole_volume.append(needle)
            continue
        healthy = tuple(m for m in sorted(replicas) if m not in needle.machines and cmap.alive(m))
        if healthy:
            plan.repairs.extend(NeedleRepair(needle, t, healthy) for t in targets if cmap.alive(t))
        elif set(targets) == set(replicas):
            plan.unrecoverable.append(needle)
    return plan


# --- re-replication -----------------------------------------------------------------------


def lost_stores(cmap: ClusterMap, now_ms: int, replace_after_s: float) -> set[int]:
    """Stores down for at least ``replace_after_s``: their copies are replaced."""
    return {m for m, s in cmap.stores.items()
            if s.down and s.down_ms and now_ms - s.down_ms >= replace_after_s * 1000}


def under_replicated(cmap: ClusterMap) -> list[Volume]:
    """Hot volumes with a replica on a store that is not alive."""
    return [v for v in cmap.volumes.values()
            if v.state is not State.WARM and any(not cmap.alive(r.machine_id) for r in v.replicas)]


def plan_replacements(cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]], lost: Container[int],
                      failures: Mapping[int, int],
                      damaged: Mapping[int, Container[int]] | None = None) -> list[tuple[Volume, Replacing]]:
    """For each hot volume with a replica on a ``lost`` store (and none being replaced),
    a new replica: on a live store without a failed probe that holds no copy of it and has
    room for it, on a rack the volume's other replicas do not use (else the one they use
    least), the freest such store first; copied from the fullest live replica that holds
    the volume (never a lagging copy, nor one whose digest is unsettled, nor one with a
    damaged needle another replica can mend: ``damaged`` names, per volume, the machines
    whose copy has one; it waits for that repair). One per volume at a time; room taken by
    earlier plans is counted."""
    damaged = damaged or {}
    free = {m: s.free_bytes for m, s in cmap.stores.items()}
    out = []
    for volume in sorted(cmap.volumes.values(), key=lambda v: v.id):
        if volume.state is State.WARM or volume.replacing is not None:
            continue
        gone = [r.machine_id for r in volume.replicas if r.machine_id in lost]
        if not gone:
            continue
        staying = [r.machine_id for r in volume.replicas if r.machine_id not in lost]
        copies = {m: p for m in staying if cmap.alive(m) and (p := reports.get(m, {}).get(volume.id)) is not None
                  and p.digest_settled and m not in damaged.get(volume.id, ())}
        if not copies:
            continue  # no good copy is up: wait for one
        source, best = max(copies.items(), key=lambda kv: (kv[1].file_bytes, kv[1].deleted, kv[1].needles, -kv[0]))
        need = volume.capacity_bytes if volume.state is State.WRITABLE else best.file_bytes
        holders = {r.machine_id for r in volume.replicas}
        racks = [cmap.rack(m) for m in staying]
        candidates = [s for s in cmap.stores.values()
                      if s.alive and not failures.get(s.machine_id) and s.machine_id not in holders
                      and free.get(s.machine_id, 0) >= need]
        if not candidates:
            continue
        chosen = min(candidates, key=lambda s: (racks.count(s.rack), -free[s.machine_id], s.machine_id))
        free[chosen.machine_id] -= need
        out.append((volume, Replacing(lost=gone[0], new=chosen.machine_id, source=source)))
    return out


def unknown_copies(cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]]
                   ) -> list[tuple[int, PhysicalVolume]]:
    """(machine, copy) of every copy a store holds of a volume id the map does not know:
    left by a creation that failed part way (a store timed out, or died, after others had
    made their copy), since records are never removed from the map."""
    return [(machine_id, copy) for machine_id, held in sorted(reports.items())
            for volume_id, copy in sorted(held.items()) if volume_id not in cmap.volumes]


def stale_copies(cmap: ClusterMap, reports: Mapping[int, Mapping[int, PhysicalVolume]]) -> list[tuple[int, int]]:
    """(machine, volume) of copies a store holds of a hot volume whose replicas no longer
    include it (it was replaced while its store was lost), to be freed, but only while
    every replica the map names is alive, holds the volume, and matches the others: the
    copy freed is then never the last good one."""
    out = []
    for machine_id, held in reports.items():
        for volume_id in held:
            volume = cmap.volumes.get(volume_id)
            if volume is None or volume.state is State.WARM:
                continue  # (a warm volume's hot copies are the migration's to free)
            named = {r.machine_id for r in volume.replicas}
            if volume.replacing is not None:
                named |= {volume.replacing.new, volume.replacing.source}
            if machine_id in named:
                continue
            copies = [reports.get(m, {}).get(volume_id) for m in named]
            if all(cmap.alive(m) for m in named) and all(c is not None for c in copies) and \
                    len({c.digest for c in copies if c is not None}) == 1:
                out.append((machine_id, volume_id))
    return out
