"""Appending a needle to a volume: the write path.

The needle is packed, appended with one pwrite under the volume's append lock, then made
durable by the group commit (``store/volume_commit.py``). Only after that is the needle
put in the index and the write acknowledged. A needle of up to ``INLINE_WRITE_BYTES`` is
appended on the event loop: a buffered pwrite only copies it into the page cache
(microseconds), less than the round trip to a thread and back costs; a bigger one is
appended in a thread. A failed write truncates back to the old end, turns the volume
read-only and raises; a write that does not fit turns it read-only (full).
"""

from __future__ import annotations

import logging
import os

from store.digest import hash_of_raw, needle_hash
from store.errors import (
    CompactionLostWrite,
    CorruptVolume,
    DiskFailure,
    NeedleTooLarge,
    VolumeReadOnly,
    VolumeRetired,
)
from store.index import MAX_OFFSET
from store.volume_base import VolumeBase, pwrite_all, read_needle_hash
from trenchcoat import needle
from trenchcoat.needle_ref import NeedleRef

log = logging.getLogger(__name__)

INLINE_WRITE_BYTES = 256 * 1024
"""Needles up to this size are appended on the event loop (a copy into the page cache);
bigger ones in an I/O thread, so one large append cannot hold up the loop."""


class VolumeAppend(VolumeBase):
    """The write path of ``Volume``."""

    async def write(self, ref: NeedleRef, data: bytes, media_type: int = 0) -> tuple[int, int]:
        """Appends a needle of ``media_type`` (a ``trenchcoat.media_types`` code) durably;
        returns (offset, stored size)."""
        key, alt, cookie = ref.key, ref.alternate_key, ref.cookie
        if len(data) > self.limits.max_needle_bytes:
            raise NeedleTooLarge(
                f"needle of {len(data)} bytes exceeds the maximum of {self.limits.max_needle_bytes}"
            )
        crc = needle.crc32c(data)
        raw = needle.pack(needle.Needle(key, alt, cookie, media_type=media_type), data, crc)
        return await self._append(raw, key, alt, needle_hash(key, alt, cookie, 0, crc))

    async def append_copied(self, raw: bytes) -> tuple[int, int]:
        """Appends a needle copied whole from another replica (a catch-up), durably, even
        to a read-only volume (a repair's copies are read-only while it runs). ``raw`` must
        verify. Returns (offset, stored size)."""
        try:
            found, data = needle.unpack(raw)
        except needle.NeedleFormatError as exc:
            raise CorruptVolume(f"volume {self.volume_id}: a copied needle does not verify ({exc})") from None
        if len(raw) != needle.stored_size(len(data)) or found.flags & needle.FLAG_DELETED:
            raise CorruptVolume(f"volume {self.volume_id}: a copied needle is not one whole live needle")
        return await self._append(raw, found.key, found.alternate_key, hash_of_raw(raw)[2], copied=True)

    async def _append(self, raw: bytes, key: int, alt: int, value: int, *, copied: bool = False) -> tuple[int, int]:
        """Appends the packed needle ``raw`` (whose digest hash is ``value``) durably."""
        async with self._append_lock:
            if copied:
                if self._retired:
                    raise VolumeRetired(f"volume {self.volume_id} is being replaced by a repair")
            else:
                self._check_writable()
            offset = self._end
            if offset + len(raw) > min(self.limits.capacity_bytes, MAX_OFFSET):
                if copied:
                    raise VolumeReadOnly(f"volume {self.volume_id} is full ({offset} of "
                                         f"{self.limits.capacity_bytes} bytes used): a copied needle does not fit")
                await self._set_read_only_locked(True)
                raise VolumeReadOnly(
                    f"volume {self.volume_id} is full ({offset} of {self.limits.capacity_bytes} "
                    f"bytes used; a {len(raw)}-byte needle does not fit): it is now read-only"
                )
            try:
                if len(raw) <= INLINE_WRITE_BYTES:
                    pwrite_all(self._handle.fd, raw, offset)
                else:
                    await self._in_thread(pwrite_all, self._handle.fd, raw, offset)
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
                raise CompactionLostWrite(f"volume {self.volume_id}: compaction lost needle {key:#x}/{alt} "
                                          "written during it")
            return moved.offset, moved.size
        self._index_put(key, alt, offset, len(raw), value)
        self._changed = True
        return offset, len(raw)

    def _index_put(self, key: int, alt: int, offset: int, size: int, value: int) -> None:
        """Indexes a live needle whose digest hash is ``value``."""
        previous = self._index.put(key, alt, offset, size)
        if previous is not None and not previous.deleted:  # overwritten: its bytes are dead now
            self.stats.needles -= 1
            self.stats.live_bytes -= previous.size
            # Rare (a write of a key already live, e.g. a retried upload): two small preads
            # on the loop, so the digest changes in the same step as the index.
            self._digest_remove(key, alt, read_needle_hash(self._handle.fd, previous.offset)[2])
        self.stats.needles += 1
        self.stats.live_bytes += size
        self._digest_add(key, alt, value)

    def _check_writable(self) -> None:
        if self.read_only:
            raise VolumeReadOnly(f"volume {self.volume_id} is read-only; the Directory should pick another")

    async def _truncate_after_failure(self, offset: int) -> None:
        self._fail(f"append at {offset} failed")
        try:
            await self._in_thread(os.ftruncate, self._handle.fd, offset)
        except OSError as exc:
            log.error("volume %d: cannot truncate back to %d: %s", self.volume_id, offset, exc)

