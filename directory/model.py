"""The Directory's picture of the cluster, as plain values: store machines, logical
volumes and their replicas, read from etcd (``directory/state.py``) and turned into
answers here. Nothing in this module does I/O.

etcd holds, under ``/trenchcoat/<cluster>/``:

| key | written by | value |
|---|---|---|
| ``stores/<machine_id>`` | the store, under its liveness lease | address, rack, disk id, capacity, free bytes |
| ``machines/<machine_id>`` | the leader | last known address and rack, disk id, down flag and why |
| ``volumes/<logical_id>`` | the leader (routers via MarkReadOnly, operators via MigrateVolume) | replicas, state, capacity, used bytes and when reported, why, repair flag, warm requested |
| ``counters/volume`` | the leader | the next logical volume id |
| ``abandoned/<logical_id>`` | the leader | when an id whose creation failed part way was given up (created only while ``volumes/<id>`` is not, and that only while this is not): its copies are freed |
| ``leader`` | the elected directory, under its lease | its name and address |
| ``damage/<logical_id>/<key>.<alt>/<machine_id>`` | the store (its audit, a read), the leader (a repair's source) | offset, size, kind, why, when found; removed once that copy is mended |
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from directory.errors import PlacementError
from trenchcoat.choice import roomier_of_two


class State(enum.Enum):
    """A logical volume's state (the contract's VolumeState)."""

    WRITABLE = "writable"
    READ_ONLY = "read_only"
    SEALED = "sealed"
    WARM = "warm"


@dataclass(frozen=True, slots=True)
class Store:
    """A store machine as the Directory sees it."""

    machine_id: int
    address: str
    rack: str
    http_address: str = ""
    """Where it serves needle reads over HTTP (empty: it does not)."""
    capacity_bytes: int = 0
    free_bytes: int = 0
    registered: bool = False
    """Its liveness lease is held now."""
    down: bool = False
    """The leader's probes have failed it (or its lease lapsed); its volumes are read-only."""
    disk_id: str = ""
    reason: str = ""
    recorded: bool = False
    """The leader has written its ``machines/<id>`` record."""
    down_ms: int = 0
    """When the leader marked it down (ms since the epoch; 0: up, or down before this was
    recorded): down past ``directory.replace_after_s``, its volumes get new replicas."""

    @property
    def alive(self) -> bool:
        return self.registered and not self.down


@dataclass(frozen=True, slots=True)
class Replica:
    """One physical copy: the physical volume id is the logical id on every machine."""

    machine_id: int
    volume_id: int


@dataclass(frozen=True, slots=True)
class Replacing:
    """A replica being replaced: ``new`` receives a copy of ``source``'s, then takes
    ``lost``'s place in the volume's replicas."""

    lost: int
    new: int
    source: int


@dataclass(frozen=True, slots=True)
class Volume:
    """A logical volume."""

    id: int
    replicas: tuple[Replica, ...]
    state: State
    capacity_bytes: int
    created_ms: int
    used_bytes: int = 0
    """Bytes in its fullest replica, as its stores last reported them (``used_ms``)."""
    used_ms: int = 0
    """When ``used_bytes`` was last taken from its stores' reports (ms since the epoch; 0:
    never, as for a volume just created). ``trenchcoat volumes`` shows its age, so a figure
    the leader has not refreshed (no leader, stores silent) reads as old, not as current."""
    reason: str = ""
    """Why it is not writable (shown by ``trenchcoat volumes``)."""
    repair: bool = False
    """Its replicas may differ; writable again only after they match."""
    warm_ms: int = 0
    """When it turned warm (ms since the epoch): its hot replicas are freed a while after."""
    warm_requested: bool = False
    """An operator asked for it in f4 now (``trenchcoat migrate``): due whatever its age."""
    freed_machines: tuple[int, ...] = ()
    """Once warm with its hot replicas freed: the machines that held them (photo URLs keep
    naming one of them, so a photo's URL does not change as it ages)."""
    replacing: Replacing | None = None
    """A new replica being made for one on a store lost for good (the leader's intent, so
    a new leader carries it on)."""
    revision: int = field(default=0, compare=False)
    """etcd mod revision of its record (for compare-and-swap)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "replicas": [[r.machine_id, r.volume_id] for r in self.replicas],
            "state": self.state.value,
            "capacity_bytes": self.capacity_bytes,
            "created_ms": self.created_ms,
            "used_bytes": self.used_bytes,
            "used_ms": self.used_ms,
            "reason": self.reason,
            "repair": self.repair,
            "warm_ms": self.warm_ms,
            "warm_requested": self.warm_requested,
            "freed_machines": list(self.freed_machines),
            **({"replacing": [self.replacing.lost, self.replacing.new, self.replacing.source]}
               if self.replacing else {}),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any], revision: int = 0) -> Volume:
        return cls(
            id=int(value["id"]),
            replicas=tuple(Replica(int(m), int(v)) for m, v in value["replicas"]),
            state=State(value["state"]),
            capacity_bytes=int(value["capacity_bytes"]),
            created_ms=int(value["created_ms"]),
            used_bytes=int(value.get("used_bytes", 0)),
            used_ms=int(value.get("used_ms", 0)),  # absent from records before it existed: never reported
            reason=str(value.get("reason", "")),
            repair=bool(value.get("repair", False)),
            warm_ms=int(value.get("warm_ms", 0)),
            warm_requested=bool(value.get("warm_requested", False)),  # absent from records before it existed
            freed_machines=tuple(int(m) for m in value.get("freed_machines", ())),
            replacing=Replacing(*(int(m) for m in value["replacing"])) if value.get("replacing") else None,
            revision=revision,
        )

    def room(self) -> int:
        return max(0, self.capacity_bytes - self.used_bytes)




@dataclass(frozen=True, slots=True)
class ClusterMap:
    """One consistent read of the Directory's state."""

    stores: dict[int, Store]
    volumes: dict[int, Volume]
    revision: int = 0
    leader: dict[str, Any] | None = None

    def alive(self, machine_id: int) -> bool:
        store = self.stores.get(machine_id)
        return store is not None and store.alive

    def address(self, machine_id: int) -> str:
        store = self.stores.get(machine_id)
        return store.address if store else ""

    def http_address(self, machine_id: int) -> str:
        store = self.stores.get(machine_id)
        return store.http_address if store else ""

    def rack(self, machine_id: int) -> str:
        store = self.stores.get(machine_id)
        return store.rack if store else ""

    def usable_for_writes(self, volume: Volume, size: int) -> bool:
        return (
            volume.state is State.WRITABLE
            and not volume.repair
            and volume.room() >= size
            and all(self.alive(r.machine_id) for r in volume.replicas)
        )

    def writable(self, size: int = 0, exclude: Iterable[int] = (), avoid_machines: Iterable[int] = ()) -> list[Volume]:
        skip, avoid = set(exclude), set(avoid_machines)
        return [
            v for v in self.volumes.values()
            if v.id not in skip and self.usable_for_writes(v, size) and not any(r.machine_id in avoid for r in v.replicas)
        ]

    def read_order(self, volume: Volume, turn: int) -> list[Replica]:
        """Replicas for one read: live ones first, rotated by ``turn`` to spread load."""
        live = [r for r in volume.replicas if self.alive(r.machine_id)]
        dead = [r for r in volume.replicas if not self.alive(r.machine_id)]
        if live:
            k = turn % len(live)
            live = live[k:] + live[:k]
        return live + dead


def choose_for_write(candidates: Sequence[Volume], rng: random.Random) -> Volume:
    """Spreads writes: of two random candidates, the one with more room (as routers choose)."""
    return roomier_of_two(candidates, rng, Volume.room)


def place(stores: Iterable[Store], copies: int, rng: random.Random) -> list[Store]:
    """``copies`` live stores on distinct racks, favouring free space (the freest store of
    each rack, racks taken in order of that store's free bytes, ties broken at random).
    Raises PlacementError when the live stores span fewer racks than ``copies``."""
    best: dict[str, Store] = {}
    shuffled = [s for s in stores if s.alive]
    rng.shuffle(shuffled)
    for store in shuffled:
        held = best.get(store.rack)
        if held is None or store.free_bytes > held.free_bytes:
            best[store.rack] = store
    if len(best) < copies:
        racks = ", ".join(sorted(best)) or "none"
        raise PlacementError(
            f"cannot place {copies} replicas on distinct racks: live stores span only "
            f"{len(best)} rack(s) ({racks}); add stores on other racks or lower directory.replicas"
        )
    return sorted(best.values(), key=lambda s: s.free_bytes, reverse=True)[:copies]
