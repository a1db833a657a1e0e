"""A store's registration in etcd: ``stores/<machine_id>`` under a lease the store keeps
alive. The Directory reads liveness from it: a store whose lease lapses is dead.

The record carries the machine's gRPC and HTTP addresses, rack, capacity and free bytes,
and the id of the disk it serves (``disk-id`` in its data directory, made on first start).
A machine id held by a live lease of another disk is refused: two stores cannot share an id. The
same disk coming back (a restart after a crash, before its old lease lapsed) takes its
registration over at once.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from store.errors import KeyStillHeld, MachineIdTaken
from trenchcoat import retry
from trenchcoat.backoff import Backoff
from trenchcoat.etcd import Etcd, LeasedKey, Record


def store_key(machine_id: int) -> str:
    return f"stores/{machine_id}"


def disk_id(directory: Path) -> str:
    """This data directory's identity, created on first use."""
    path = directory / "disk-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        value = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        os.replace(tmp, path)
        return value


class Registration:
    """Keeps ``stores/<machine_id>`` alive for this process."""

    def __init__(self, etcd: Etcd, *, machine_id: int, address: str, rack: str,
                 directory: Path, ttl_s: int, http_address: str = "") -> None:
        self._directory = directory
        self._info = {"machine_id": machine_id, "address": address, "http_address": http_address,
                      "rack": rack, "disk_id": disk_id(directory)}
        self._ttl = ttl_s
        self.key = LeasedKey(etcd, store_key(machine_id), ttl_s, self._value, self._take_over)

    def _value(self) -> dict[str, Any]:
        usage = shutil.disk_usage(self._directory)
        # Free bytes move with every write; report them in 64 MiB steps so the record
        # is rewritten when the figure means something, not on every refresh.
        step = 64 * 1024 * 1024
        return {**self._info, "capacity_bytes": usage.total, "free_bytes": usage.free // step * step}

    def _take_over(self, holder: Record) -> bool:
        if holder.value.get("disk_id") == self._info["disk_id"]:
            return True  # our own earlier incarnation
        raise MachineIdTaken(
            f"machine id {self._info['machine_id']} is already registered by the store at "
            f"{holder.value.get('address')} (rack {holder.value.get('rack')}, another disk); "
            "give this store its own store.machine_id"
        )

    async def start(self) -> None:
        """Registers or raises: MachineIdTaken, or Unavailable if etcd cannot be reached.
        A registration of this disk's earlier incarnation is taken over at once; one of
        another disk is given one lease TTL to lapse (its store may have died with the
        disk this one replaces) before the id is refused as taken."""
        machine_id = self._info["machine_id"]

        async def attempt() -> None:
            if not await self.key.claim():  # its holder went between the two looks: again
                raise KeyStillHeld(f"machine id {machine_id} was held at the claim; trying again")

        await retry.until(attempt, self._ttl + 1, passing=(MachineIdTaken, KeyStillHeld),
                          what=f"the lease of another disk's registration of machine id {machine_id} to lapse",
                          backoff=Backoff(base_s=0.5, max_s=0.5))

    async def run(self) -> None:
        await self.key.run()

    async def shutdown(self) -> None:
        await self.key.shutdown()
