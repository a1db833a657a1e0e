"""Every directory process's current copy of the cluster map, re-read from etcd every
``refresh_interval_s`` (or at once when this process changed something), and the
change feed behind WatchVolumes.

Re-reading the whole map (a few KB per thousand volumes) instead of following an etcd
watch keeps this simple and immune to etcd restarts and compactions; a subscriber sees a
change within one refresh interval.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from directory.model import ClusterMap, Volume
from directory.state import DirectoryState
from trenchcoat.errors import Unavailable
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


def _face(cmap: ClusterMap, volume: Volume) -> tuple[object, ...]:
    """What a subscriber sees of a volume: its record plus its replicas' liveness."""
    return (volume, tuple((cmap.address(r.machine_id), cmap.http_address(r.machine_id), cmap.alive(r.machine_id))
                          for r in volume.replicas))


class MapView(PeriodicWorker):
    """This process's copy of the map, re-read from etcd every ``interval_s`` (or at once
    after ``wake()``), and the stream of its changes (``watch``)."""

    def __init__(self, state: DirectoryState, interval_s: float) -> None:
        super().__init__("volume map", interval_s)
        self._state = state
        self.current: ClusterMap | None = None
        self._changed = asyncio.Condition()
        self._version = 0
        self._changes: list[tuple[int, list[int]]] = []  # (version, volume ids changed)

    async def load(self) -> None:
        await self.refresh()

    async def refresh(self) -> ClusterMap:
        new = await self._state.read()
        old = self.current
        changed = [
            vid for vid, volume in new.volumes.items()
            if old is None or vid not in old.volumes or _face(old, old.volumes[vid]) != _face(new, volume)
        ]
        self.current = new
        if changed:
            async with self._changed:
                self._version += 1
                self._changes.append((self._version, changed))
                del self._changes[:-256]
                self._changed.notify_all()
        return new

    def now(self) -> ClusterMap:
        if self.current is None:
            raise Unavailable("the directory has not read its state from etcd yet")
        return self.current

    async def tick(self) -> None:
        await self.refresh()

    async def shutdown(self) -> None:
        """Ends the loop (waiting for a refresh under way) and every watch."""
        await super().shutdown()
        async with self._changed:
            self._changed.notify_all()

    def _moved_past(self, version: int) -> bool:
        return self._version > version or self._stop.is_set()

    async def watch(self) -> AsyncIterator[tuple[bool, list[Volume], ClusterMap]]:
        """The whole map, then each change: (is_snapshot, volumes, map they belong to)."""
        cmap = self.now()
        seen = self._version
        yield True, [cmap.volumes[v] for v in sorted(cmap.volumes)], cmap
        while not self._stop.is_set():
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._moved_past, seen))
                pending = [c for c in self._changes if c[0] > seen]
                complete = bool(pending) and pending[0][0] == seen + 1  # else older changes were dropped
                seen = self._version
            if self._stop.is_set():
                return
            cmap = self.now()
            if complete:
                ids = sorted({vid for _, vids in pending for vid in vids})
                yield False, [cmap.volumes[v] for v in ids if v in cmap.volumes], cmap
            else:  # fell too far behind: send everything
                yield True, [cmap.volumes[v] for v in sorted(cmap.volumes)], cmap
