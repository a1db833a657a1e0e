"""What every operation on a volume shares: the open file and its index, the counters, the
locks, turning read-only, and the answers for a missing or damaged needle.

``VolumeBase`` is the state; each operation is a class of its own file built on it
(``volume_append.py``, ``volume_read.py``, ...), and ``store/volume.py`` puts them
together as ``Volume``, the class the rest of the store uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from store.datasync import Datasync, ThreadDatasync
from store.digest import ContentDigest, hash_of_parts
from store.errors import ChecksumMismatch, NeedleNotFound
from store.index import DELETED_BIT, SIZE_MASK, NeedleIndex
from store.volume_commit import GroupCommit
from trenchcoat import needle
from trenchcoat.lograte import OncePerInterval
from trenchcoat.store_types import Finding

if TYPE_CHECKING:
    from store.volume import VolumeLimits

log = logging.getLogger(__name__)

T = TypeVar("T")

DAMAGE_LOG_INTERVAL_S = 60.0
"""A damaged needle answered DATA_LOSS is logged at most once in this many seconds (a hot
damaged photo is read at request rate); every answer is still counted."""
DAMAGE_LOG_NEEDLES = 1024
"""Damaged needles of one volume whose last log line is remembered (bounded memory)."""


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


class Handle:
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


class VolumeBase:
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
        digest: ContentDigest | None = None,
        *,
        digest_settled: bool = True,
    ) -> None:
        self.path = path
        self.superblock = superblock
        self.limits = limits
        self.io = IoCounters()
        self.stats = VolumeStats()
        self._handle = Handle(fd)
        self._index = index
        self.digest = digest if digest is not None else ContentDigest()
        """The content digest of the live needles in the index (``store/digest.py``)."""
        self.digest_settled = digest_settled
        """False while the index may still count as live a needle deleted after the last
        checkpoint (opened after a crash), until a recount (``VolumeAudit.recount``) has
        looked at every needle's flags on disk."""
        self._digest_journal: list[tuple[int, int, int, int]] | None = None
        """While a recount runs: every change made to the digest meanwhile, (+1 or -1, key,
        alternate key, hash), for the recount to apply to its result."""
        self._end = end
        self._executor = executor
        self._datasync = datasync or ThreadDatasync(executor)
        self._append_lock = asyncio.Lock()
        self._compact_lock = asyncio.Lock()
        self._commit = GroupCommit(self)
        self._pending: set[int] = set()
        """Offsets of needles appended and not yet durable (so not yet in the index)."""
        self._compaction_deletes: set[tuple[int, int]] | None = None
        """Deletes made while a compaction copies, for it to apply to the new file."""
        self._changed = False
        self._retired = False
        self.on_damage: Callable[[Finding], None] | None = None
        """Told of a needle a read found damaged (as often as it is logged): the store
        reports it to the Directory for repair at once (``store/audit.py``)."""
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

    # --- read-only ---------------------------------------------------------------------

    async def set_read_only(self, read_only: bool) -> None:
        async with self._append_lock:
            await self._set_read_only_locked(read_only)

    async def _set_read_only_locked(self, read_only: bool) -> None:
        if self.superblock.read_only == read_only:
            return
        updated = replace(self.superblock, read_only=read_only)
        await self._in_thread(pwrite_all, self._handle.fd, updated.pack(), 0)
        await self._in_thread(os.fdatasync, self._handle.fd)
        self.superblock = updated
        log.info("volume %d is now %s", self.volume_id, "read-only" if read_only else "writable")

    def _fail(self, why: str) -> None:
        """After an I/O failure: refuse further writes (in memory at once; on disk if we can)."""
        log.error("volume %d: %s; turning read-only", self.volume_id, why)
        self.superblock = replace(self.superblock, read_only=True)

    # --- answers for a needle that cannot be served ------------------------------------

    def _not_found(self, key: int, alt: int) -> NeedleNotFound:
        # Deliberately the same for unknown, deleted and wrong-cookie needles.
        return NeedleNotFound(f"needle {key:#x}/{alt} not found in volume {self.volume_id}")

    def _damaged(self, key: int, alt: int, offset: int, what: str) -> ChecksumMismatch:
        """The DATA_LOSS answer for a damaged needle, logged here (once per needle per
        ``DAMAGE_LOG_INTERVAL_S``): the caller that receives it (a cache, a router) may say
        which store, but only the store's own log says where in which file."""
        error = ChecksumMismatch(f"volume {self.volume_id}: needle {key:#x}/{alt} at offset {offset} {what}")
        held = self.damage_log.due((key, alt))
        if held is not None:
            log.error("%s; answered DATA_LOSS%s", error,
                      f" (and {held} more times since it was last logged)" if held else "")
            entry = self._index.get(key, alt)
            if self.on_damage is not None and entry is not None:
                kind = "damaged" if "checksum" in what else "unreadable"
                self.on_damage(Finding(self.volume_id, key, alt, offset, entry.size, kind, what))
        return error

    # --- counters and threads ----------------------------------------------------------

    def _count_deleted(self, size: int) -> None:
        """A live needle of ``size`` stored bytes became deleted."""
        self.stats.needles -= 1
        self.stats.live_bytes -= size
        self.stats.deleted += 1

    def _digest_add(self, key: int, alt: int, value: int) -> None:
        self.digest.add(key, alt, value)
        if self._digest_journal is not None:
            self._digest_journal.append((1, key, alt, value))

    def _digest_remove(self, key: int, alt: int, value: int) -> None:
        self.digest.remove(key, alt, value)
        if self._digest_journal is not None:
            self._digest_journal.append((-1, key, alt, value))

    def _recount(self) -> None:
        _, _, _, sizes = self._index.arrays()
        deleted = (sizes & DELETED_BIT) != 0
        real = (sizes & SIZE_MASK).astype("int64")
        self.stats = VolumeStats(
            needles=int((~deleted).sum()),
            deleted=int(deleted.sum()),
            live_bytes=int(real[~deleted].sum()),
        )

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Writes all of ``data`` at ``offset`` (a pwrite may write less than it was given)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"short write at {offset}")
        view, offset = view[written:], offset + written


def read_header_and_footer(fd: int, offset: int) -> tuple[bytes, bytes]:
    """The header and footer bytes of the needle at ``offset`` (two small preads; the data
    is not read). Blocking: call in a thread. Raises ``needle.NeedleFormatError`` when the
    header does not parse (it says where the footer is)."""
    header = os.pread(fd, needle.HEADER.size, offset)
    _, size = needle.unpack_header(header)
    return header, os.pread(fd, needle.FOOTER.size, offset + needle.HEADER.size + size)


def read_needle_hash(fd: int, offset: int) -> tuple[int, int, int, bool]:
    """(key, alternate key, digest hash, deleted) of the needle at ``offset``, from its
    header and footer. Blocking: call in a thread. Raises ``needle.NeedleFormatError``
    when either does not parse."""
    return hash_of_parts(*read_header_and_footer(fd, offset))
