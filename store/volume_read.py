"""Reading needles from a volume: the read path.

One index lookup, then exactly one pread of the whole needle on the descriptor opened
with the volume. When the page cache holds the needle the pread runs on the event loop
with RWF_NOWAIT (a few microseconds, no thread hop); when it would have to wait for the
disk the kernel says so without reading (EAGAIN) and the pread runs in a reader thread
instead. Either way the disk is read once. Header, cookie, then CRC are verified: wrong
cookie -> NeedleNotFound, bad bytes -> ChecksumMismatch (DATA_LOSS). ``read_many`` serves
a batch the same way with one thread trip for all of its uncached needles.

A needle deleted after the last checkpoint (then a restart) is still live in the index;
the read sees the flag in the bytes it reads anyway, answers NeedleNotFound and tells the
index.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from store.digest import hash_of_raw
from store.index import Entry
from store.volume_base import VolumeBase
from trenchcoat import needle
from trenchcoat.errors import TrenchcoatError
from trenchcoat.needle_ref import NeedleRef


class _NoWait:
    supported = hasattr(os, "RWF_NOWAIT")
    """False once the kernel or filesystem refused RWF_NOWAIT: every read goes to a thread."""


_nowait = _NoWait()


class VolumeRead(VolumeBase):
    """The read path of ``Volume``."""

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
                for i, read in zip(missing, await self._in_thread(_pread_all, fd, spans), strict=True):
                    bufs[i] = read
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
            raise self._not_found(key, alt)
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
            was = self._index.mark_deleted(key, alt)
            if was is not None and not was.deleted:
                self._count_deleted(needle.stored_size(size))
                try:
                    self._digest_remove(key, alt, hash_of_raw(buf)[2])
                except needle.NeedleFormatError:
                    self.digest_settled = False  # its footer is damaged: the audit recounts
            raise self._not_found(key, alt)
        if found.cookie != cookie:
            raise self._not_found(key, alt)
        try:
            _, data = needle.unpack(buf)
        except needle.NeedleFormatError as exc:
            raise self._damaged(key, alt, offset, f"failed verification ({exc})") from None
        return needle.Stored(bytes(data), found.media_type)


def _pread_all(fd: int, spans: list[tuple[int, int]]) -> list[bytes]:
    return [os.pread(fd, size, offset) for size, offset in spans]
