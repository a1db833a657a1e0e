"""Reading and changing the Directory's state in etcd (layout in ``directory/model.py``).
Every change to a volume is a compare-and-swap on its record, so two directories (or a
leader and a router's MarkReadOnly) never overwrite each other's changes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from directory.errors import VolumeMissing
from directory.model import ClusterMap, State, Store, Volume
from trenchcoat.errors import FailedPrecondition
from trenchcoat.etcd import Etcd

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 20




class DirectoryState:
    """The cluster map in etcd."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    async def read(self) -> ClusterMap:
        records, revision = await self.etcd.get_prefix("")
        registered: dict[int, dict[str, Any]] = {}
        machines: dict[int, dict[str, Any]] = {}
        volumes: dict[int, Volume] = {}
        leader = None
        for key, record in records.items():
            kind, _, ident = key.partition("/")
            if kind == "stores" and ident.isdigit():
                registered[int(ident)] = record.value
            elif kind == "machines" and ident.isdigit():
                machines[int(ident)] = record.value
            elif kind == "volumes" and ident.isdigit():
                volumes[int(ident)] = Volume.from_json(record.value, record.mod_revision)
            elif key == "leader":
                leader = record.value
        stores = {}
        for machine_id in registered.keys() | machines.keys():
            live = registered.get(machine_id)
            known = machines.get(machine_id, {})
            info = live or known
            stores[machine_id] = Store(
                machine_id=machine_id,
                address=str(info.get("address", "")),
                rack=str(info.get("rack", "")),
                http_address=str(info.get("http_address", "")),
                capacity_bytes=int(info.get("capacity_bytes", 0)),
                free_bytes=int(info.get("free_bytes", 0)),
                registered=live is not None,
                down=bool(known.get("down", False)),
                disk_id=str(info.get("disk_id", "")),
                reason=str(known.get("reason", "")),
                recorded=machine_id in machines,
                down_ms=int(known.get("down_ms", 0)),
            )
        return ClusterMap(stores=stores, volumes=volumes, revision=revision, leader=leader)

    async def volume(self, volume_id: int) -> Volume:
        """One volume's record straight from etcd; VolumeMissing if there is none."""
        record = await self.etcd.get(f"volumes/{volume_id}")
        if record is None:
            raise VolumeMissing(f"logical volume {volume_id} does not exist")
        return Volume.from_json(record.value, record.mod_revision)

    async def set_machine(self, store: Store, *, down: bool, reason: str = "") -> None:
        """Records the store up, or down since now (since it was first marked down)."""
        down_ms = (store.down_ms or int(time.time() * 1000)) if down else 0
        await self.etcd.put(f"machines/{store.machine_id}", {
            "machine_id": store.machine_id, "address": store.address, "rack": store.rack,
            "http_address": store.http_address, "disk_id": store.disk_id, "down": down, "reason": reason,
            "down_ms": down_ms,
        })

    async def next_volume_id(self) -> int:
        for _ in range(_CAS_ATTEMPTS):
            record = await self.etcd.get("counters/volume")
            if record is None:
                if await self.etcd.create("counters/volume", {"next": 2}):
                    return 1
                continue
            n = int(record.value["next"])
            if await self.etcd.swap("counters/volume", {"next": n + 1}, record.mod_revision):
                return n
        raise FailedPrecondition("could not take a volume id: the counter kept changing under us")

    async def volume_ids_taken(self) -> int:
        """How many logical volume ids have been handed out (ids 1 to this)."""
        record = await self.etcd.get("counters/volume")
        return int(record.value["next"]) - 1 if record is not None else 0

    async def add_volume(self, volume: Volume) -> None:
        """Puts a new volume in the map, unless its id was abandoned meanwhile."""
        if not await self.etcd.create(f"volumes/{volume.id}", volume.to_json(), unless=f"abandoned/{volume.id}"):
            raise FailedPrecondition(f"logical volume {volume.id} already exists, or its id was abandoned "
                                     "(a directory found its copies unknown to the map and freed them)")

    async def abandon(self, volume_id: int) -> bool:
        """Marks a volume id that never made it into the map (its creation failed part way)
        as never to: True if it is abandoned (now or before), so the copies made of it may
        be freed; False if the volume is in the map after all. Atomic with ``add_volume``."""
        if await self.etcd.create(f"abandoned/{volume_id}", {"at_ms": int(time.time() * 1000)},
                                  unless=f"volumes/{volume_id}"):
            return True
        return await self.etcd.get(f"abandoned/{volume_id}") is not None

    async def update_volume(self, volume_id: int, change: Callable[[Volume], Volume | None]) -> Volume:
        """Applies ``change`` to the current record until the swap holds; ``change``
        returns None to leave the record as it is."""
        for _ in range(_CAS_ATTEMPTS):
            record = await self.etcd.get(f"volumes/{volume_id}")
            if record is None:
                raise VolumeMissing(f"logical volume {volume_id} does not exist")
            current = Volume.from_json(record.value, record.mod_revision)
            updated = change(current)
            if updated is None or updated == current:
                return current
            if await self.etcd.swap(f"volumes/{volume_id}", updated.to_json(), record.mod_revision):
                return Volume.from_json(updated.to_json(), record.mod_revision + 1)
        raise FailedPrecondition(f"logical volume {volume_id} kept changing; try again")

    async def mark_read_only(self, volume_id: int, reason: str, *, repair: bool) -> Volume:
        def change(v: Volume) -> Volume | None:
            if v.state in (State.SEALED, State.WARM):
                return None  # moving into (or living in) f4: its hot copies are not repaired
            if v.state is not State.WRITABLE and (v.repair or not repair):
                return None
            state = State.READ_ONLY if v.state is State.WRITABLE else v.state
            return replace(v, state=state, reason=reason or v.reason, repair=v.repair or repair)

        volume = await self.update_volume(volume_id, change)
        log.info("logical volume %d read-only: %s", volume_id, reason)
        return volume
