"""One physical volume: a file of needles (format in ``trenchcoat/needle.py``), its in-RAM
index, and the operations on it.

Write path: the needle is packed, appended with one pwrite under the volume's append
lock, then made durable by the group commit (``GroupCommit``): concurrent writers share
one fdatasync, submitted as kernel AIO where Linux allows it, else run in an I/O thread
(``store/datasync.py``). Only after that is the needle put in the index and
the write acknowledged. A needle of up to ``INLINE_WRITE_BYTES`` is appended on the event
loop: a buffered pwrite only copies it into the page cache (microseconds), less than the
round trip to a thread and back costs; a bigger one is appended in a thread. A failed write truncates back to the old end and turns the volume
read-only; so does a failed fdatasync (after one, the page cache cannot be trusted).

Read path: one index lookup, then exactly one pread of the whole needle on the
descriptor opened with the volume. When the page cache holds the needle the pread runs
on the event loop with RWF_NOWAIT (a few microseconds, no thread hop); when it would
have to wait for the disk the kernel says so without reading (EAGAIN) and the pread
runs in a reader thread instead. Either way the disk is read once. Header, cookie, then
CRC are verified: wrong cookie -> NeedleNotFound, bad bytes -> ChecksumMismatch
(DATA_LOSS). ``read_many`` serves a batch the same way with one thread trip for all of
its uncached needles.

Startup (``open_volume``): the checkpoint gives the index up to ``covered_end``; only the
tail past it is scanned. A torn tail (crash mid-append) is truncated. Damage in the
middle is not mistaken for a torn tail: the scan looks for intact needles after it and,
finding some, keeps them and leaves the damaged needle to answer DATA_LOSS.

Deletes set the flag byte in the needle in place (durably) and in the index. A delete of
a needle older than the last checkpoint is found again after a restart by the read
itself, which sees the flag in the bytes it reads anyway.

Compaction copies live needles to ``vol-<id>.dat.compact`` while reads and writes go on,
catches up the tail under the append lock, then renames it over the volume file. A crash
before the rename leaves the old file whole (the leftover is removed at startup); a crash
between the data and checkpoint renames leaves a checkpoint of the old generation, which
is then ignored.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from store import checkpoint, metrics
from store.datasync import Datasync, ThreadDatasync
from store.errors import (
    BadNeedleRequest,
    ChecksumMismatch,
    CompactionLostWrite,
    CorruptVolume,
    DiskFailure,
    NeedleNotFound,
    NeedleTooLarge,
    VolumeReadOnly,
    VolumeRetired,
)
from store.index import (
    DELETED_BIT,
    MAX_OFFSET,
    OFFSET_UNIT,
    SIZE_MASK,
    Entry,
    NeedleIndex,
)
from trenchcoat import needle
from trenchcoat.errors import TrenchcoatError
from trenchcoat.lograte import OncePerInterval
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Damage

log = logging.getLogger(__name__)

SCAN_CHUNK = 8 * 1024 * 1024
EXPORT_CHUNK = 1024 * 1024
INLINE_WRITE_BYTES = 256 * 1024
"""Needles up to this size are appended on the event loop (a copy into the page cache);
bigger ones in an I/O thread, so one large append cannot hold up the loop."""
DAMAGE_LOG_INTERVAL_S = 60.0
"""A damaged needle answered DATA_LOSS is logged at most once in this many seconds (a hot
damaged photo is read at request rate); every answer is still counted."""
DAMAGE_LOG_NEEDLES = 1024
"""Damaged needles of one volume whose last log line is remembered (bounded memory)."""


@dataclass(frozen=True, slots=True)
class VolumeLimits:
    """Limits from the store config."""

    capacity_bytes: int
    """Largest volume file; a write that does not fit turns the volume read-only."""
    max_needle_bytes: int
    """Largest needle data."""


@dataclass(slots=True)
class VolumeStats:
    """Counters of one volume, kept current by every operation."""

    needles: int = 0
    """Live needles."""
    deleted: int = 0
    """Needles flagged deleted and still in the index."""
    live_bytes: int = 0
    """Stored bytes of live needles; everything else past the superblock is dead."""


@dataclass(slots=True)
class IoCounters:
    """Syscall counters (the bench reads them to show one pread per read)."""

    preads: int = 0
    """Preads that read needle bytes (one per needle read)."""
    nowait_misses: int = 0
    """RWF_NOWAIT attempts the page cache could not answer; each was followed by the
    needle's one pread in a reader thread. They do no disk I/O."""
    fsyncs: int = 0
    synced_writes: int = 0
    """Writes and deletes made durable; synced_writes / fsyncs is the mean batch."""


class _Handle:
    """A descriptor shared by in-flight reads; closed when retired and no read holds it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.retired = False

    def acquire(self) -> int:
        self.users += 1
        return self.fd

    def release(self) -> None:
        self.users -= 1
        if self.retired and self.users == 0:
            os.close(self.fd)

    def retire(self) -> None:
        self.retired = True
        if self.users == 0:
            os.close(self.fd)


class GroupCommit:
    """Makes writes durable with as few fdatasyncs as possible: a writer that finds a
    sync running waits for the next one, which covers everything written meanwhile. A
    sync covers every write appended before it starts, including those of the requests
    the event loop handles in the same turn as the one that asked for it (the sync's
    task first runs after them), so a burst shares one without anyone waiting longer."""

    def __init__(self, volume: Volume) -> None:
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


class Volume:
    """One open volume file with its index. All methods run on the owning event loop."""

    def __init__(
        self,
        path: Path,
        fd: int,
        superblock: needle.Superblock,
        index: NeedleIndex,
        end: int,
        limits: VolumeLimits,
        executor: ThreadPoolExecutor,
        datasync: Datasync | None = None,
    ) -> None:
        self.path = path
        self.superblock = superblock
        self.limits = limits
        self.io = IoCounters()
        self.stats = VolumeStats()
        self._handle = _Handle(fd)
        self._index = index
        self._end = end
        self._executor = executor
        self._datasync = datasync or ThreadDatasync(executor)
        self._append_lock = asyncio.Lock()
        self._compact_lock = asyncio.Lock()
        self._commit = GroupCommit(self)
        self._pending: set[int] = set()
        self._compaction_deletes: set[tuple[int, int]] | None = None
        self._changed = False
        self._retired = False
        self.damage_log: OncePerInterval[tuple[int, int]] = OncePerInterval(
            DAMAGE_LOG_INTERVAL_S, capacity=DAMAGE_LOG_NEEDLES)
        """Which damaged needles (key, alternate key) were logged lately."""
        self._recount()

    # --- properties --------------------------------------------------------------------

    @property
    def volume_id(self) -> int:
        return self.superblock.volume_id

    @property
    def read_only(self) -> bool:
        return self.superblock.read_only

    @property
    def file_bytes(self) -> int:
        return self._end

    @property
    def dead_bytes(self) -> int:
        """Bytes compaction would reclaim: deleted and overwritten needles."""
        return self._end - needle.SUPERBLOCK.size - self.stats.live_bytes

    @property
    def index(self) -> NeedleIndex:
        return self._index

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(".idx")

    # --- write -------------------------------------------------------------------------

    async def write(self, ref: NeedleRef, data: bytes, media_type: int = 0) -> tuple[int, int]:
        """Appends a needle of ``media_type`` (a ``trenchcoat.media_types`` code) durably;
        returns (offset, stored size)."""
        key, alt, cookie = ref.key, ref.alternate_key, ref.cookie
        if len(data) > self.limits.max_needle_bytes:
            raise NeedleTooLarge(
                f"needle of {len(data)} bytes exceeds the maximum of {self.limits.max_needle_bytes}"
            )
        raw = needle.pack(needle.Needle(key, alt, cookie, media_type=media_type), data)
        async with self._append_lock:
            self._check_writable()
            offset = self._end
            if offset + len(raw) > min(self.limits.capacity_bytes, MAX_OFFSET):
                await self._set_read_only_locked(True)
                raise VolumeReadOnly(
                    f"volume {self.volume_id} is full ({offset} of {self.limits.capacity_bytes} "
                    f"bytes used; a {len(raw)}-byte needle does not fit): it is now read-only"
                )
            try:
                if len(raw) <= INLINE_WRITE_BYTES:
                    _pwrite_all(self._handle.fd, raw, offset)
                else:
                    await self._in_thread(_pwrite_all, self._handle.fd, raw, offset)
            except OSError as exc:
                await self._truncate_after_failure(offset)
                raise DiskFailure(f"volume {self.volume_id}: write failed: {exc}") from exc
            self._end = offset + len(raw)
            self._pending.add(offset)
            generation = self.superblock.generation
        try:
            await self._commit.wait_durable()
        finally:
            if self.superblock.generation == generation:
                self._pending.discard(offset)  # (a swap cleared the old file's offsets)
        if self.superblock.generation != generation:
            # A compaction swapped files while this write waited for its sync: its tail
            # catch-up copied the needle and indexed it at its new offset (durably).
            moved = self._index.get(key, alt)
            if moved is None:
                raise CompactionLostWrite(f"volume {self.volume_id}: compaction lost needle {key:#x}/{alt} written during it")
            return moved.offset, moved.size
        self._index_put(key, alt, offset, len(raw), deleted=False)
        self._changed = True
        return offset, len(raw)

    def _index_put(self, key: int, alt: int, offset: int, size: int, *, deleted: bool) -> None:
        previous = self._index.put(key, alt, offset, size, deleted=deleted)
        if previous is not None and not previous.deleted:  # overwritten: its bytes are dead now
            self.stats.needles -= 1
            self.stats.live_bytes -= previous.size
        if deleted:
            self.stats.deleted += 1
        else:
            self.stats.needles += 1
            self.stats.live_bytes += size

    # --- read --------------------------------------------------------------------------

    async def read(self, ref: NeedleRef) -> needle.Stored:
        """The needle's data (and type) after verification, with exactly one pread."""
        entry = self._entry(ref.key, ref.alternate_key)
        handle = self._handle
        fd = handle.acquire()
        try:
            buf = self._pread_cached(fd, entry.size, entry.offset)
            if buf is None:
                buf = await self._in_thread(os.pread, fd, entry.size, entry.offset)
        finally:
            handle.release()
        self.io.preads += 1
        return self._verify(buf, ref, entry.offset)

    async def read_many(self, reads: Sequence[NeedleRef]) -> list[needle.Stored | TrenchcoatError]:
        """Several reads: for each, the data or its error.
        Cached needles are read on the loop; the rest in a single trip to a reader thread."""
        results: list[needle.Stored | TrenchcoatError | None] = [None] * len(reads)
        bufs: list[bytes | bytearray | None] = [None] * len(reads)
        entries: list[Entry | None] = [None] * len(reads)
        handle = self._handle
        fd = handle.acquire()
        try:
            for i, ref in enumerate(reads):
                try:
                    entries[i] = entry = self._entry(ref.key, ref.alternate_key)
                except TrenchcoatError as exc:
                    results[i] = exc
                    continue
                bufs[i] = self._pread_cached(fd, entry.size, entry.offset)
            missing = [i for i, e in enumerate(entries) if e is not None and bufs[i] is None]
            if missing:
                spans = [(entries[i].size, entries[i].offset) for i in missing]  # type: ignore[union-attr]
                for i, buf in zip(missing, await self._in_thread(_pread_all, fd, spans), strict=True):
                    bufs[i] = buf
        finally:
            handle.release()
        for i, ref in enumerate(reads):
            found, buf = entries[i], bufs[i]
            if found is None or buf is None:
                continue
            self.io.preads += 1
            try:
                results[i] = self._verify(buf, ref, found.offset)
            except TrenchcoatError as exc:
                results[i] = exc
        return results  # type: ignore[return-value]

    def _entry(self, key: int, alt: int) -> Entry:
        entry = self._index.get(key, alt)
        if entry is None or entry.deleted:
            raise NeedleNotFound(_not_found(self.volume_id, key, alt))
        return entry

    def _pread_cached(self, fd: int, size: int, offset: int) -> bytes | bytearray | None:
        """The needle's bytes if the page cache holds all of them, read without blocking
        the loop; None when reading them would wait for the disk."""
        if not _nowait.supported:
            return None
        buf = bytearray(size)
        try:
            got = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            got = -1
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _nowait.supported = False  # a kernel or filesystem without RWF_NOWAIT
            return None
        if got != size:  # not cached (or only partly): the reader thread does the read
            self.io.nowait_misses += 1
            return None
        return buf

    def _verify(self, buf: bytes | bytearray, ref: NeedleRef, offset: int) -> needle.Stored:
        key, alt, cookie = ref.key, ref.alternate_key, ref.cookie
        try:
            found, size = needle.unpack_header(buf)
        except needle.NeedleFormatError as exc:
            raise self._damaged(key, alt, offset, f"is damaged ({exc})") from None
        if found.key != key or found.alternate_key != alt:
            raise self._damaged(key, alt, offset, f"holds {found.key:#x}/{found.alternate_key} instead")
        if found.flags & needle.FLAG_DELETED:
            # Deleted after the last checkpoint: the index learns it now.
            if self._index.mark_deleted(key, alt) is not None:
                self._index_fix_deleted(needle.stored_size(size))
            raise NeedleNotFound(_not_found(self.volume_id, key, alt))
        if found.cookie != cookie:
            raise NeedleNotFound(_not_found(self.volume_id, key, alt))
        try:
            _, data = needle.unpack(buf)
        except needle.NeedleFormatError as exc:
            raise self._damaged(key, alt, offset, f"failed verification ({exc})") from None
        return needle.Stored(bytes(data), found.media_type)

    def _damaged(self, key: int, alt: int, offset: int, what: str) -> ChecksumMismatch:
        """The DATA_LOSS answer for a damaged needle, logged here (once per needle per
        ``DAMAGE_LOG_INTERVAL_S``): the caller that receives it (a cache, a router) may say
        which store, but only the store's own log says where in which file."""
        error = ChecksumMismatch(f"volume {self.volume_id}: needle {key:#x}/{alt} at offset {offset} {what}")
        held = self.damage_log.due((key, alt))
        if held is not None:
            log.error("%s; answered DATA_LOSS%s", error,
                      f" (and {held} more times since it was last logged)" if held else "")
        return error

    def _index_fix_deleted(self, size: int) -> None:
        self.stats.needles -= 1
        self.stats.live_bytes -= size
        self.stats.deleted += 1

    # --- delete ------------------------------------------------------------------------

    async def delete(self, ref: NeedleRef) -> bool:
        """Flags the needle deleted on disk and in the index; False if it already was."""
        key, alt = ref.key, ref.alternate_key
        entry = self._index.get(key, alt)
        if entry is None:
            raise NeedleNotFound(_not_found(self.volume_id, key, alt))
        if entry.deleted:
            return False
        return await self._flag_deleted(key, alt, ref.cookie)

    async def deleted_needles(self) -> list[tuple[int, int]]:
        """(key, alternate key) of every needle deleted in this copy: flagged in the index,
        or only on disk (deleted after the last checkpoint, then a crash: reads find those
        flags, the index does not yet). Call after ``retire``, so none is added meanwhile."""
        keys, alts, units, sizes = self._index.arrays()
        return await self._in_thread(_deleted, self._handle.fd, keys, alts, units, sizes)

    async def keep_deleted(self, gone: Sequence[tuple[int, int]]) -> int:
        """Flags every needle of ``gone`` that this copy holds live: a repair's copy taking
        over from one where they were deleted must not bring them back (its source may
        have been down when they were deleted). Returns how many were flagged."""
        flagged = 0
        for key, alt in gone:
            entry = self._index.get(key, alt)
            if entry is not None and not entry.deleted:
                flagged += await self._flag_deleted(key, alt, None)
        return flagged

    async def _flag_deleted(self, key: int, alt: int, cookie: int | None) -> bool:
        """Sets the needle's deleted flag durably (``cookie`` must match unless None)."""
        async with self._append_lock:
            if self._retired:
                raise VolumeRetired(f"volume {self.volume_id} is being replaced by a repair; retry the delete")
            # Again, under the lock: a compaction may have moved the needle meanwhile.
            entry = self._index.get(key, alt)
            if entry is None:
                raise NeedleNotFound(_not_found(self.volume_id, key, alt))
            if entry.deleted:
                return False
            header = await self._in_thread(os.pread, self._handle.fd, needle.HEADER.size, entry.offset)
            self.io.preads += 1
            try:
                found, _ = needle.unpack_header(header)
            except needle.NeedleFormatError as exc:
                raise self._damaged(key, alt, entry.offset, f"is damaged ({exc})") from None
            if found.key != key or (cookie is not None and found.cookie != cookie):
                raise NeedleNotFound(_not_found(self.volume_id, key, alt))
            if found.flags & needle.FLAG_DELETED:
                self._index.mark_deleted(key, alt)
                self._index_fix_deleted(entry.size)
                return False
            flag = bytes([found.flags | needle.FLAG_DELETED])
            try:
                await self._in_thread(_pwrite_all, self._handle.fd, flag, entry.offset + needle.FLAGS_OFFSET)
            except OSError as exc:
                self._fail(f"delete write failed: {exc}")
                raise DiskFailure(f"volume {self.volume_id}: delete failed: {exc}") from exc
            if self._compaction_deletes is not None:
                self._compaction_deletes.add((key, alt))
        await self._commit.wait_durable()
        was = self._index.mark_deleted(key, alt)
        if was is not None and not was.deleted:  # a compaction meanwhile may have applied it already
            self._index_fix_deleted(was.size)
        self._changed = True
        return True

    # --- read-only ---------------------------------------------------------------------

    async def set_read_only(self, read_only: bool) -> None:
        async with self._append_lock:
            await self._set_read_only_locked(read_only)

    async def _set_read_only_locked(self, read_only: bool) -> None:
        if self.superblock.read_only == read_only:
            return
        updated = replace(self.superblock, read_only=read_only)
        await self._in_thread(_pwrite_all, self._handle.fd, updated.pack(), 0)
        await self._in_thread(os.fdatasync, self._handle.fd)
        self.superblock = updated
        log.info("volume %d is now %s", self.volume_id, "read-only" if read_only else "writable")

    def _check_writable(self) -> None:
        if self.read_only:
            raise VolumeReadOnly(f"volume {self.volume_id} is read-only; the Directory should pick another")

    def _fail(self, why: str) -> None:
        """After an I/O failure: refuse further writes (in memory at once; on disk if we can)."""
        log.error("volume %d: %s; turning read-only", self.volume_id, why)
        self.superblock = replace(self.superblock, read_only=True)

    async def _truncate_after_failure(self, offset: int) -> None:
        self._fail(f"append at {offset} failed")
        try:
            await self._in_thread(os.ftruncate, self._handle.fd, offset)
        except OSError as exc:
            log.error("volume %d: cannot truncate back to %d: %s", self.volume_id, offset, exc)

    # --- compaction --------------------------------------------------------------------

    async def compact(self) -> tuple[int, int]:
        """Rewrites live needles into a new file and swaps it in; returns
        (bytes reclaimed, live needles)."""
        async with self._compact_lock:
            tmp = self.path.with_suffix(".dat.compact")
            old_end = self._end
            keys, alts, units, sizes = (a.copy() for a in self._index.arrays())
            # Writes appended but not yet durable are not in the index: the tail catch-up
            # copies everything from the first of them on, so none is left behind.
            snapshot_end = min(self._pending, default=self._end)
            self._compaction_deletes = set()
            generation = self.superblock.generation + 1
            source = self._handle
            source_fd = source.acquire()  # held: a repair may retire this copy meanwhile
            try:
                new_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    new_sb = replace(self.superblock, generation=generation)
                    placed = await self._in_thread(
                        _copy_live, source_fd, new_fd, new_sb, keys, alts, units, sizes, snapshot_end
                    )
                    async with self._append_lock:
                        if self._retired:
                            raise VolumeRetired(f"volume {self.volume_id} was replaced by a repair; "
                                                "its compaction is abandoned")
                        new_sb = replace(self.superblock, generation=generation)
                        new_index, new_end = await self._in_thread(
                            _finish_compaction, self._handle.fd, new_fd, new_sb, placed,
                            snapshot_end, self._end, self._compaction_deletes,
                        )
                        await self._in_thread(
                            checkpoint.write, self.index_path.with_suffix(".idx.compact"),
                            self.volume_id, generation, new_end, new_index.arrays(),
                        )
                        os.replace(tmp, self.path)
                        os.replace(self.index_path.with_suffix(".idx.compact"), self.index_path)
                        checkpoint.fsync_dir(self.path.parent)
                        old = self._handle
                        self._handle = _Handle(new_fd)
                        old.retire()
                        self._index = new_index
                        self._end = new_end
                        self.superblock = new_sb
                        # Writes still waiting for their sync were copied (and synced) with
                        # the tail; their old-file offsets mean nothing now.
                        self._pending.clear()
                        self._recount()
                except BaseException:
                    if self._handle.fd != new_fd:
                        os.close(new_fd)
                    raise
            finally:
                source.release()
                self._compaction_deletes = None
                tmp.unlink(missing_ok=True)
                self.index_path.with_suffix(".idx.compact").unlink(missing_ok=True)
        log.info("volume %d compacted: %d -> %d bytes", self.volume_id, old_end, self._end)
        return old_end - self._end, self.stats.needles

    # --- scrub, export, checkpoint, close ---------------------------------------------

    async def scrub(self) -> tuple[int, list[Damage]]:
        """Verifies every needle in the index; returns (checked, damaged)."""
        keys, alts, units, sizes = (a.copy() for a in self._index.arrays())
        handle = self._handle
        fd = handle.acquire()
        try:
            return await self._in_thread(_scrub, fd, keys, alts, units, sizes)
        finally:
            handle.release()

    async def export(self, offset: int, chunk: int) -> AsyncIterator[tuple[int, bytes, int]]:
        """Yields (offset, bytes, end) of the volume file from ``offset`` to its end now."""
        end = self._end
        if offset > end:
            raise BadNeedleRequest(f"export offset {offset} is past the end of volume {self.volume_id} ({end})")
        chunk = chunk or EXPORT_CHUNK
        handle = self._handle
        fd = handle.acquire()
        try:
            while offset < end:
                data = await self._in_thread(os.pread, fd, min(chunk, end - offset), offset)
                if not data:
                    break
                yield offset, data, end
                offset += len(data)
        finally:
            handle.release()

    async def checkpoint(self) -> bool:
        """Writes the index checkpoint if anything changed; True if written."""
        if not self._changed or self._retired:  # a replaced copy must not overwrite its successor's
            return False
        self._changed = False
        covered = min(self._pending) if self._pending else self._end
        arrays = tuple(a.copy() for a in self._index.arrays())
        await self._in_thread(
            checkpoint.write, self.index_path, self.volume_id, self.superblock.generation, covered, arrays
        )
        return True

    async def close(self) -> None:
        async with self._append_lock:
            await self.checkpoint()
            self._handle.retire()

    async def retire(self) -> None:
        """Before this copy's file is replaced: refuse writes and wait out the append in
        progress; no checkpoint or compaction of it happens from here on (either would
        overwrite its successor's files). Reads go on until ``detach``."""
        self.superblock = replace(self.superblock, read_only=True)
        async with self._append_lock:
            self._retired = True

    def detach(self) -> None:
        """Closes the descriptor once the reads under way on it are done (a copy replaced
        after ``retire``, or one opened only to be checked)."""
        self._handle.retire()

    # --- helpers -----------------------------------------------------------------------

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _recount(self) -> None:
        _, _, _, sizes = self._index.arrays()
        deleted = (sizes & DELETED_BIT) != 0
        real = (sizes & SIZE_MASK).astype("int64")
        self.stats = VolumeStats(
            needles=int((~deleted).sum()),
            deleted=int(deleted.sum()),
            live_bytes=int(real[~deleted].sum()),
        )


# --- creating and opening --------------------------------------------------------------


def volume_path(directory: Path, volume_id: int) -> Path:
    return directory / f"vol-{volume_id}.dat"


def create_volume(directory: Path, volume_id: int, limits: VolumeLimits,
                  executor: ThreadPoolExecutor, datasync: Datasync | None = None) -> Volume:
    """Creates an empty volume file (superblock only), durably."""
    path = volume_path(directory, volume_id)
    superblock = needle.Superblock(volume_id, int(time.time() * 1000))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _pwrite_all(fd, superblock.pack(), 0)
        os.fsync(fd)
        checkpoint.fsync_dir(directory)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return Volume(path, fd, superblock, NeedleIndex(), needle.SUPERBLOCK.size, limits, executor, datasync)


def open_volume(path: Path, limits: VolumeLimits, executor: ThreadPoolExecutor,
                datasync: Datasync | None = None) -> tuple[Volume, list[Damage]]:
    """Opens a volume: checkpoint, then scan of the tail (blocking; call in a thread)."""
    path.with_suffix(".dat.compact").unlink(missing_ok=True)  # an interrupted compaction
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            superblock = needle.Superblock.unpack(os.pread(fd, needle.SUPERBLOCK.size, 0))
        except ValueError as exc:
            raise CorruptVolume(f"{path}: {exc}") from None
        size = os.fstat(fd).st_size
        loaded = checkpoint.load(path.with_suffix(".idx"), superblock.volume_id, superblock.generation)
        if loaded is not None and loaded.covered_end <= size:
            index, start = loaded.index, loaded.covered_end
        else:
            index, start = NeedleIndex(), needle.SUPERBLOCK.size
        end, damage = scan(fd, index, start, size)
        if end < size:
            log.warning("%s: torn tail of %d bytes at %d truncated", path, size - end, end)
            os.ftruncate(fd, end)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return Volume(path, fd, superblock, index, end, limits, executor, datasync), damage


def scan(fd: int, index: NeedleIndex, start: int, size: int) -> tuple[int, list[Damage]]:
    """Indexes needles from ``start`` to ``size``; returns (end of the last intact needle,
    damaged needles kept in the index)."""
    pos = start
    damage: list[Damage] = []
    buf, buf_at = b"", start
    while pos < size:
        rel = pos - buf_at
        if len(buf) - rel < needle.HEADER.size:
            buf, buf_at, rel = os.pread(fd, SCAN_CHUNK, pos), pos, 0
        try:
            found, data_size = needle.unpack_header(buf, rel)
            total = needle.stored_size(data_size)
            if pos + total > size:
                raise needle.NeedleFormatError("needle runs past the end of the file")
            if len(buf) - rel < total:
                buf, buf_at, rel = os.pread(fd, max(SCAN_CHUNK, total), pos), pos, 0
            needle.unpack(buf, rel)
        except needle.NeedleFormatError as exc:
            if exc.checksum:
                # Intact structure, rotten bytes: keep it so reads answer DATA_LOSS.
                damage.append(Damage(found.key, found.alternate_key, pos, str(exc)))
            else:
                resume = _next_intact(fd, pos + needle.ALIGNMENT, size)
                if resume is None:
                    return pos, damage  # torn tail
                log.error("damaged bytes at %d..%d skipped (%s)", pos, resume, exc)
                damage.append(Damage(0, 0, pos, f"unreadable region of {resume - pos} bytes ({exc})"))
                pos = resume
                continue
        index.put(found.key, found.alternate_key, pos, total,
                  deleted=bool(found.flags & needle.FLAG_DELETED))
        pos += total
    return pos, damage


def _next_intact(fd: int, pos: int, size: int) -> int | None:
    """Offset of the next intact needle after damage, or None if none follows."""
    magic = needle.HEADER_MAGIC.to_bytes(4, "little")
    while pos < size:
        chunk = os.pread(fd, SCAN_CHUNK, pos)
        at = chunk.find(magic)
        while at >= 0:
            candidate = pos + at
            if candidate % needle.ALIGNMENT == 0:
                head = os.pread(fd, needle.HEADER.size, candidate)
                try:
                    _, data_size = needle.unpack_header(head)
                    total = needle.stored_size(data_size)
                    if candidate + total <= size:
                        needle.unpack(os.pread(fd, total, candidate))
                        return candidate
                except needle.NeedleFormatError:
                    pass
            at = chunk.find(magic, at + 1)
        pos += max(len(chunk) - 3, 1)
    return None


def _copy_live(src: int, dst: int, sb: needle.Superblock, keys, alts, units, sizes,
               before: int):
    """Compaction phase 1 (thread): copies the live needles that start before ``before``
    (the rest are the tail's, copied in phase 2) in offset order; returns (key, alt, new
    offset, size) for each."""
    _pwrite_all(dst, sb.pack(), 0)
    live = ((sizes & DELETED_BIT) == 0) & (units.astype(np.uint64) * OFFSET_UNIT < before)
    order = units[live].argsort()
    k, a, u, s = keys[live][order], alts[live][order], units[live][order], sizes[live][order]
    out = needle.SUPERBLOCK.size
    placed = []
    for key, alt, unit, size in zip(k.tolist(), a.tolist(), u.tolist(), s.tolist()):
        raw = os.pread(src, size, unit * OFFSET_UNIT)
        if len(raw) == size and raw[needle.FLAGS_OFFSET] & needle.FLAG_DELETED:
            continue  # deleted after the last checkpoint
        _pwrite_all(dst, raw, out)
        placed.append((key, alt, out, size))
        out += size
    return placed


def _finish_compaction(src, dst, sb, placed, snapshot_end, end, deletes):
    """Compaction phase 2 (thread, append lock held): copy needles written since the
    snapshot, apply deletes made meanwhile, sync; returns (new index, new end)."""
    index = NeedleIndex()
    out = needle.SUPERBLOCK.size
    for key, alt, offset, size in placed:
        index.put(key, alt, offset, size)
        out = offset + size
    pos = snapshot_end
    while pos < end:
        found, data_size = needle.unpack_header(os.pread(src, needle.HEADER.size, pos))
        total = needle.stored_size(data_size)
        raw = os.pread(src, total, pos)
        if not raw[needle.FLAGS_OFFSET] & needle.FLAG_DELETED:
            _pwrite_all(dst, raw, out)
            index.put(found.key, found.alternate_key, out, total)
            out += total
        pos += total
    for key, alt in deletes:
        entry = index.get(key, alt)
        if entry is not None and not entry.deleted:
            raw = os.pread(dst, needle.HEADER.size, entry.offset)
            _pwrite_all(dst, bytes([raw[needle.FLAGS_OFFSET] | needle.FLAG_DELETED]),
                        entry.offset + needle.FLAGS_OFFSET)
            index.mark_deleted(key, alt)
    _pwrite_all(dst, sb.pack(), 0)
    os.fsync(dst)
    return index, out


def _deleted(fd, keys, alts, units, sizes) -> list[tuple[int, int]]:
    gone = []
    for key, alt, unit, size in zip(keys.tolist(), alts.tolist(), units.tolist(), sizes.tolist()):
        if not size & DELETED_BIT:
            try:
                found, _ = needle.unpack_header(os.pread(fd, needle.HEADER.size, unit * OFFSET_UNIT))
            except needle.NeedleFormatError:
                continue  # damaged: a scrub reports it; it is not a delete
            if not found.flags & needle.FLAG_DELETED:
                continue
        gone.append((key, alt))
    return gone


def _scrub(fd, keys, alts, units, sizes) -> tuple[int, list[Damage]]:
    damaged = []
    checked = 0
    for key, alt, unit, size in zip(keys.tolist(), alts.tolist(), units.tolist(), sizes.tolist()):
        if size & DELETED_BIT:
            continue
        checked += 1
        offset = unit * OFFSET_UNIT
        try:
            found, _ = needle.unpack(os.pread(fd, size, offset))
            if found.key != key or found.alternate_key != alt:
                raise needle.NeedleFormatError(f"holds {found.key:#x}/{found.alternate_key}")
        except needle.NeedleFormatError as exc:
            damaged.append(Damage(key, alt, offset, str(exc)))
    return checked, damaged


class _NoWait:
    supported = hasattr(os, "RWF_NOWAIT")


_nowait = _NoWait()


def _pread_all(fd: int, spans: list[tuple[int, int]]) -> list[bytes]:
    return [os.pread(fd, size, offset) for size, offset in spans]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"short write at {offset}")
        view, offset = view[written:], offset + written


def _not_found(volume_id: int, key: int, alt: int) -> str:
    # Deliberately the same for unknown, deleted and wrong-cookie needles.
    return f"needle {key:#x}/{alt} not found in volume {volume_id}"
