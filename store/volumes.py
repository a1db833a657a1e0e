"""The set of volumes on one store machine, and the background checkpointer.

Volumes live in ``<cluster.data_dir>/store-<machine_id>/vol-<id>.dat`` (+ ``.idx``).
All are opened at start (checkpoint + tail scan each, in threads) and closed with a
final checkpoint on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from store import checkpoint, metrics
from store.datasync import Datasync, datasync_for
from store.errors import (
    BadNeedleRequest,
    ChecksumMismatch,
    CorruptVolume,
    RepairInProgress,
    VolumeExists,
    VolumeNotFound,
    VolumeStillWritable,
)
from store.volume import Volume, VolumeLimits
from store.volume_load import create_volume, open_volume, volume_path
from trenchcoat import needle
from trenchcoat.errors import TrenchcoatError
from trenchcoat.needle import Stored
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Damage, ExportChunk, Finding
from trenchcoat.workers import PeriodicWorker, keep_pace

log = logging.getLogger(__name__)

RESTORE_SYNC_BYTES = 4 * 1024 * 1024
"""A throttled whole-volume copy is made durable this many bytes at a time as it arrives."""
_VOLUME_FILE = re.compile(r"vol-([1-9][0-9]*)\.dat")
MAX_VOLUME_ID = (1 << 32) - 1


class VolumeSet:
    """Every volume of this machine, by id."""

    def __init__(self, directory: Path, limits: VolumeLimits, io_threads: int) -> None:
        self.directory = directory
        self.limits = limits
        self.executor = ThreadPoolExecutor(io_threads, thread_name_prefix="store-io")
        self._datasync: Datasync | None = None
        self._volumes: dict[int, Volume] = {}
        self._creating = asyncio.Lock()
        self._restoring: set[int] = set()
        self.restoring: dict[int, tuple[int, int]] = {}
        """Whole copies under way: volume -> (bytes received, bytes the copy will hold)."""
        self.startup_damage: dict[int, list[Damage]] = {}
        self.on_damage: Callable[[Finding], None] | None = None
        """Given to every volume: told of each needle a read finds damaged."""

    def _adopt(self, volume: Volume) -> Volume:
        volume.on_damage = self.on_damage
        self._volumes[volume.volume_id] = volume
        return volume

    @property
    def datasync(self) -> Datasync:
        """The group commits' fdatasync, shared by every volume (made on the event loop)."""
        if self._datasync is None:
            self._datasync = datasync_for(self.executor)
        return self._datasync

    async def load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for path in sorted(self.directory.iterdir()):
            match = _VOLUME_FILE.fullmatch(path.name)
            if not match:
                continue
            volume, damage = await loop.run_in_executor(self.executor, open_volume, path, self.limits, self.executor,
                                                        self.datasync)
            self._adopt(volume)
            if damage:
                self.startup_damage[volume.volume_id] = damage
                log.error("volume %d: %d damaged needles found at startup", volume.volume_id, len(damage))
        log.info("loaded %d volumes from %s", len(self._volumes), self.directory)

    def get(self, volume_id: int) -> Volume:
        volume = self._volumes.get(volume_id)
        if volume is None:
            raise VolumeNotFound(f"volume {volume_id} is not on this store")
        return volume

    async def read_many(self, reads: Sequence[NeedleRef]) -> list[Stored | TrenchcoatError]:
        """Reads possibly across volumes: for each, the data or its error, in request order."""
        results: list[Stored | TrenchcoatError | None] = [None] * len(reads)
        by_volume: dict[int, list[int]] = {}
        for i, read in enumerate(reads):
            by_volume.setdefault(read.logical_volume, []).append(i)
        for volume_id, positions in by_volume.items():
            try:
                volume = self.get(volume_id)
            except TrenchcoatError as exc:
                for i in positions:
                    results[i] = exc
                continue
            got = await volume.read_many([reads[i] for i in positions])
            for i, result in zip(positions, got, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    def all(self) -> list[Volume]:
        return [self._volumes[k] for k in sorted(self._volumes)]

    async def create(self, volume_id: int) -> Volume:
        if not 1 <= volume_id <= MAX_VOLUME_ID:
            raise BadNeedleRequest(f"volume id must be in 1..{MAX_VOLUME_ID}, got {volume_id}")
        async with self._creating:
            if volume_id in self._volumes or volume_path(self.directory, volume_id).exists():
                raise VolumeExists(f"volume {volume_id} already exists on this store")
            volume = await asyncio.get_running_loop().run_in_executor(
                self.executor, create_volume, self.directory, volume_id, self.limits, self.executor, self.datasync
            )
            return self._adopt(volume)

    async def restore(self, volume_id: int, chunks: AsyncIterator[ExportChunk], *,
                      bytes_per_s: int = 0) -> tuple[Volume, int]:
        """Replaces (or creates) a volume with a copy streamed from another replica. Every
        chunk's CRC is checked, the copy is made durable and verified needle by needle
        before it is swapped in; until then the old copy serves, and reads already under
        way on it finish there. Every needle deleted in the old copy is flagged in the new
        one before the swap (deletes arriving meanwhile are refused, to be retried on the
        new copy). Returns the new volume and the bytes copied."""
        if not 1 <= volume_id <= MAX_VOLUME_ID:
            raise BadNeedleRequest(f"volume id must be in 1..{MAX_VOLUME_ID}, got {volume_id}")
        async with self._creating:
            if volume_id in self._restoring:
                raise RepairInProgress(f"volume {volume_id} is already being repaired")
            self._restoring.add(volume_id)
        loop = asyncio.get_running_loop()
        path = volume_path(self.directory, volume_id)
        tmp = path.with_name(path.name + ".repair")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                copied = await self._receive(fd, volume_id, chunks, bytes_per_s)
                # A new incarnation of the file: a checkpoint the old copy wrote (or is
                # writing) can never be mistaken for this one's.
                old = self._volumes.get(volume_id)
                await loop.run_in_executor(self.executor, _next_generation, fd,
                                           old.superblock.generation if old is not None else 0)
                await loop.run_in_executor(self.executor, os.fsync, fd)
            finally:
                os.close(fd)
            volume, damage = await loop.run_in_executor(self.executor, open_volume, tmp, self.limits, self.executor,
                                                        self.datasync)
            try:
                if volume.volume_id != volume_id:
                    raise CorruptVolume(f"the copy of volume {volume_id} is volume {volume.volume_id}")
                old = self._volumes.get(volume_id)
                # A damaged copy never replaces one this store holds. A store that holds none
                # (a new replica, a replaced disk) takes one whose only damage is rot inside
                # needles, and reports those for repair from another replica: better a copy
                # with a few needles to mend than no copy.
                if damage and (old is not None or any(not d.key for d in damage)):
                    raise CorruptVolume(f"the copy of volume {volume_id} has {len(damage)} damaged needles "
                                        f"(first at offset {damage[0].offset}: {damage[0].reason})")
                if old is not None:
                    await old.retire()  # no write, delete, checkpoint or compaction of it from here on
                    # A repair never brings a deleted needle back: the source may have been
                    # down when it was deleted here.
                    kept = await volume.keep_deleted(await old.deleted_needles())
                    if kept:
                        log.info("volume %d: %d needles deleted here stay deleted in the copy", volume_id, kept)
                path.with_suffix(".idx").unlink(missing_ok=True)  # the old copy's checkpoint
                os.replace(tmp, path)  # the open descriptor follows the file
                checkpoint.fsync_dir(self.directory)
                volume.path = path
            except BaseException:
                volume.detach()
                raise
            # The verified copy serves from here on; the old one closes once the reads
            # under way on it are done.
            self._adopt(volume)
            if old is not None:
                old.detach()
            for d in damage:
                log.error("volume %d: the copy received holds needle %#x/%d damaged at offset %d (%s); reported "
                          "for repair", volume_id, d.key, d.alternate_key, d.offset, d.reason)
            if self.on_damage is not None:
                for finding in findings_of(volume, damage):
                    self.on_damage(finding)
            log.info("volume %d restored from a replica: %d bytes, %d needles", volume_id, copied, volume.stats.needles)
            return volume, copied
        finally:
            tmp.unlink(missing_ok=True)
            self._restoring.discard(volume_id)
            self.restoring.pop(volume_id, None)

    async def _receive(self, fd: int, volume_id: int, chunks: AsyncIterator[ExportChunk], bytes_per_s: int) -> int:
        loop = asyncio.get_running_loop()
        expected, end, synced = 0, None, 0
        began = loop.time()
        async for chunk in chunks:
            if chunk.offset != expected:
                raise CorruptVolume(f"repair of volume {volume_id}: chunk at {chunk.offset}, expected {expected}")
            if needle.crc32c(chunk.data) != chunk.crc32c:
                raise ChecksumMismatch(
                    f"repair of volume {volume_id}: chunk at {chunk.offset} failed its checksum in transit")
            await loop.run_in_executor(self.executor, os.pwrite, fd, chunk.data, chunk.offset)
            expected += len(chunk.data)
            end = chunk.end
            self.restoring[volume_id] = (expected, end)
            metrics.RESTORED_BYTES.inc(len(chunk.data))
            if bytes_per_s:
                if expected - synced >= RESTORE_SYNC_BYTES:
                    # A throttled copy is written back a few MiB at a time, not left for one
                    # flush of the whole volume at its end: the disk stays free for the
                    # fdatasyncs of live writes, which would otherwise queue behind it.
                    await loop.run_in_executor(self.executor, os.fdatasync, fd)
                    synced = expected
                await keep_pace(began, expected, bytes_per_s)
        if end is None or expected != end:
            raise CorruptVolume(f"repair of volume {volume_id}: stream ended at {expected} of {end} bytes")
        return expected

    async def free(self, volume_id: int) -> int | None:
        """Removes a read-only volume's files once reads under way on it are done (the
        volume lives in f4 now). Returns the bytes freed, or None when this store does not
        hold the volume (freed before: freeing twice is harmless). VolumeStillWritable for a
        writable volume."""
        async with self._creating:
            if volume_id in self._restoring:
                raise RepairInProgress(f"volume {volume_id} is being repaired; free it afterwards")
            volume = self._volumes.get(volume_id)
            path = volume_path(self.directory, volume_id)
            if volume is not None and not volume.read_only:
                raise VolumeStillWritable(f"volume {volume_id} is writable here; only a sealed volume is freed")
            self._volumes.pop(volume_id, None)
        if volume is not None:
            await volume.retire()  # no write, checkpoint or compaction from here on
            volume.detach()  # the descriptor closes after the reads under way
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, _remove_volume_files, self.directory, path,
                                          volume is not None)

    async def checkpoint_all(self) -> int:
        written = 0
        for volume in self.all():
            written += await volume.checkpoint()
        return written

    async def close(self) -> None:
        for volume in self.all():
            await volume.close()
        if self._datasync is not None:
            self._datasync.close()
        self.executor.shutdown(wait=True)


def findings_of(volume: Volume, damage: Sequence[Damage]) -> list[Finding]:
    """What a scan of ``volume`` found damaged (at startup, or in a received copy), as the
    findings reported to the Directory: rot inside a needle is "damaged" (its size from the
    index), a region that does not parse "unreadable"."""
    out = []
    for d in damage:
        entry = volume.index.get(d.key, d.alternate_key) if d.key else None
        out.append(Finding(volume.volume_id, d.key, d.alternate_key, d.offset, entry.size if entry else 0,
                           "damaged" if "checksum" in d.reason else "unreadable", d.reason))
    return out


def _next_generation(fd: int, floor: int) -> None:
    """Rewrites a received copy's superblock with a generation above both its own and
    ``floor`` (blocking; call in a thread). A copy whose superblock does not parse is left
    for the verification to refuse."""
    try:
        superblock = needle.Superblock.unpack(os.pread(fd, needle.SUPERBLOCK.size, 0))
    except ValueError:
        return
    bumped = replace(superblock, generation=max(superblock.generation, floor) + 1)
    os.pwrite(fd, bumped.pack(), 0)


class Checkpointer(PeriodicWorker):
    """Writes index checkpoints of changed volumes every ``interval_s``. A failed tick (a
    full disk) is logged and retried, and reads go on; ``shutdown()`` returns once the
    tick under way has ended, so the final checkpoints of ``VolumeSet.close`` never run
    beside it."""

    def __init__(self, volumes: VolumeSet, interval_s: float) -> None:
        super().__init__("checkpointer", interval_s)
        self._volumes = volumes

    async def tick(self) -> None:
        await self._volumes.checkpoint_all()


def _remove_volume_files(directory: Path, path: Path, held: bool) -> int | None:
    freed = 0
    for name in (path, path.with_suffix(".idx")):
        try:
            freed += name.stat().st_size
            name.unlink()
        except FileNotFoundError:
            pass
    checkpoint.fsync_dir(directory)
    return freed if held or freed else None
