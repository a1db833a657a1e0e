"""Hot -> warm: the leader moves aged (or requested) read-only volumes into f4, one at a time.

A volume is due when it is read-only (not under repair) and either full, older than
``f4.warm_after_s``, or asked for by an operator (``trenchcoat migrate``: MigrateVolume
records ``warm_requested``, turning a writable volume read-only first; see ``requested``).
Requested volumes go first.

A volume's move, each step recorded in etcd before the next so that a leader that dies
anywhere leaves a volume the next leader carries on with:

1. ``read_only -> sealed``: no repair or read-only flip touches it from here on, and every
   hot replica is set to refuse writes before it is read; reads go on from them.
2. The f4 front encodes it (``EncodeVolume``: every blob written and read back against
   the hot tier's CRC before it answers). A failed or interrupted encode is simply run
   again: it is idempotent, and the volume stays sealed and served hot meanwhile.
3. ``sealed -> warm`` (with the time): caches read it from f4 from their next map.
4. ``f4.free_after_s`` later (every cache has heard), each hot replica is freed
   (``FreeVolume``); only when all are gone are the replicas dropped from the record.
   Freeing twice is harmless; nothing is freed before the volume is warm in etcd.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from directory import metrics
from directory.errors import VolumeUnderRepair
from directory.model import ClusterMap, State, Volume
from directory.state import DirectoryState
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.config import F4Config
from trenchcoat.errors import TrenchcoatError

log = logging.getLogger(__name__)


REQUESTED_REASON = "moving into f4 on request"
"""Why a writable volume asked for in f4 turned read-only (shown by ``trenchcoat volumes``)."""




def requested(volume: Volume) -> Volume | None:
    """The change MigrateVolume makes to ``volume``'s record (None: none is needed, it is
    already sealed or warm): wanted in f4 now, read-only if it was writable."""
    if volume.state in (State.SEALED, State.WARM):
        return None
    if volume.repair:
        raise VolumeUnderRepair(
            f"logical volume {volume.id} is under repair ({volume.reason or 'its replicas may differ'}): "
            "it can move into f4 once the leader has made its replicas match; ask again then")
    if volume.state is State.WRITABLE:
        return replace(volume, state=State.READ_ONLY, reason=REQUESTED_REASON, warm_requested=True)
    return replace(volume, warm_requested=True)


async def request(state: DirectoryState, volume_id: int) -> Volume:
    """Records in etcd that ``volume_id`` is wanted in f4 now (MigrateVolume); the leader
    seals it at its next tick. Returns the record after the change."""
    volume = await state.update_volume(volume_id, requested)
    log.info("logical volume %d: asked for in f4 now; it is %s", volume_id, volume.state.value)
    return volume


def due(volume: Volume, now_ms: int, config: F4Config, full_ratio: float) -> bool:
    """Whether a volume should be moving into f4 (or carried on with)."""
    if volume.repair:
        return False
    if volume.state is State.SEALED:
        return True
    if volume.state is State.WARM:
        return bool(volume.replicas)
    if volume.state is not State.READ_ONLY:
        return False
    if volume.warm_requested:
        return True
    full = volume.used_bytes >= full_ratio * volume.capacity_bytes or volume.reason == "full"
    return full or now_ms - volume.created_ms >= config.warm_after_s * 1000


class Migration:
    def __init__(self, state: DirectoryState, stores: StoreClient, f4: F4Client, config: F4Config,
                 full_ratio: float) -> None:
        self._state = state
        self._stores = stores
        self._f4 = f4
        self._config = config
        self._full_ratio = full_ratio

    def next(self, cmap: ClusterMap) -> Volume | None:
        """The volume to work on now: one already under way first, then one an operator
        asked for, then the oldest due."""
        now = int(time.time() * 1000)
        # A warm volume whose hot copies cannot all be freed now (a store down) waits for
        # the store without holding up the volumes behind it.
        candidates = [v for v in cmap.volumes.values() if due(v, now, self._config, self._full_ratio)
                      and not (v.state is State.WARM and not all(cmap.alive(r.machine_id) for r in v.replicas))]
        metrics.MIGRATING.set(sum(v.state is State.SEALED for v in cmap.volumes.values()))
        if not candidates:
            return None
        return min(candidates, key=lambda v: (v.state is State.READ_ONLY, not v.warm_requested, v.created_ms, v.id))

    async def step(self, cmap: ClusterMap, volume: Volume) -> None:
        """Takes ``volume`` as far as it can go now."""
        if volume.state is State.READ_ONLY:
            volume = await self._transition(volume.id, State.READ_ONLY, State.SEALED, "moving into f4")
            metrics.MIGRATIONS.labels("sealed", "ok").inc()
            log.info("logical volume %d sealed: moving into f4", volume.id)
        if volume.state is State.SEALED:
            try:
                # Every hot copy refuses writes before it is read (a router with an old map
                # might still try one): what is encoded is all there will ever be.
                for replica in volume.replicas:
                    try:
                        await self._stores.set_read_only(cmap.address(replica.machine_id), replica.volume_id, True)
                    except TrenchcoatError as exc:
                        if cmap.alive(replica.machine_id):
                            raise
                        # A store the map holds down takes no writes, and the volume was
                        # read-only in every map before it was sealed: encode from the others
                        # rather than wait for it (its copy is freed when it is back).
                        log.warning("logical volume %d: store %d is down (%s); encoding from the other replicas",
                                    volume.id, replica.machine_id, exc)
                done = await self._f4.encode_volume(volume.id)
            except TrenchcoatError as exc:
                metrics.MIGRATIONS.labels("encoded", "failed").inc()
                log.warning("logical volume %d: encode into f4 failed, will retry (it is served hot): %s",
                            volume.id, exc)
                return
            metrics.MIGRATIONS.labels("encoded", "ok").inc()
            log.info("logical volume %d encoded into f4: %d blobs in %d stripes, %.2fx on disk", volume.id,
                     done.blobs, done.stripes, done.stored_bytes / max(done.logical_bytes, 1))
            volume = await self._transition(volume.id, State.SEALED, State.WARM, "in f4")
            metrics.MIGRATIONS.labels("warm", "ok").inc()
        if volume.state is State.WARM and volume.replicas:
            if time.time() * 1000 < volume.warm_ms + self._config.free_after_s * 1000:
                return  # caches are still learning that it is warm
            await self._free(cmap, volume)

    async def _transition(self, volume_id: int, old: State, new: State, reason: str) -> Volume:
        now = int(time.time() * 1000)

        def change(v: Volume) -> Volume | None:
            if v.state is not old:
                return None
            return replace(v, state=new, reason=reason, warm_ms=now if new is State.WARM else v.warm_ms)

        return await self._state.update_volume(volume_id, change)

    async def _free(self, cmap: ClusterMap, volume: Volume) -> None:
        left = []
        for replica in volume.replicas:
            address = cmap.address(replica.machine_id)
            try:
                await self._stores.free_volume(address, replica.volume_id)
            except TrenchcoatError as exc:
                left.append(replica.machine_id)
                log.warning("logical volume %d: freeing its hot copy on store %d failed, will retry: %s",
                            volume.id, replica.machine_id, exc)
        if left:
            metrics.MIGRATIONS.labels("freed", "failed").inc()
            return

        def drop(v: Volume) -> Volume | None:
            if v.state is not State.WARM or not v.replicas:
                return None  # not warm, or freed already (a retry): the machines recorded then stay
            return replace(v, replicas=(), freed_machines=tuple(sorted(r.machine_id for r in v.replicas)))

        await self._state.update_volume(volume.id, drop)
        metrics.MIGRATIONS.labels("freed", "ok").inc()
        log.info("logical volume %d: hot replicas freed (stores %s); it lives in f4",
                 volume.id, [r.machine_id for r in volume.replicas])
