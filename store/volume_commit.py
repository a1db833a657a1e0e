"""The group commit: how a volume's appends and deletes become durable.

Concurrent writers share one fdatasync, submitted as kernel AIO where Linux allows it,
else run in an I/O thread (``store/datasync.py``). A write is put in the index and
acknowledged only after its sync; a failed fdatasync turns the volume read-only (after
one, the page cache cannot be trusted).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from store import metrics
from store.errors import DiskFailure

if TYPE_CHECKING:
    from store.volume_base import VolumeBase


class GroupCommit:
    """Makes writes durable with as few fdatasyncs as possible: a writer that finds a
    sync running waits for the next one, which covers everything written meanwhile. A
    sync covers every write appended before it starts, including those of the requests
    the event loop handles in the same turn as the one that asked for it (the sync's
    task first runs after them), so a burst shares one without anyone waiting longer."""

    def __init__(self, volume: VolumeBase) -> None:
        self._volume = volume
        self._written = 0
        self._synced = 0
        self._running: asyncio.Future[None] | None = None

    async def wait_durable(self) -> None:
        self._written += 1
        mine = self._written
        while self._synced < mine:
            if self._running is None:
                self._running = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._running)

    async def _sync(self) -> None:
        target = self._written  # every write counted so far is appended: this sync covers it
        batch = target - self._synced
        handle = self._volume._handle  # held: a compaction or repair may retire it meanwhile
        fd = handle.acquire()
        try:
            await self._volume._datasync.fdatasync(fd)
        except OSError as exc:
            self._volume._fail(f"fdatasync failed: {exc}")
            raise DiskFailure(f"volume {self._volume.volume_id}: fdatasync failed: {exc}") from exc
        finally:
            handle.release()
            self._running = None
        self._synced = target
        self._volume.io.fsyncs += 1
        self._volume.io.synced_writes += batch
        metrics.FSYNC_BATCH.observe(batch)
