"""Deleting needles from a volume.

A delete sets the flag byte in the needle in place (durably, through the group commit)
and in the index. A delete of a needle older than the last checkpoint is found again
after a restart by the read itself (``store/volume_read.py``), which sees the flag in the
bytes it reads anyway. A repair's copy keeps the deletes of the copy it replaces
(``deleted_needles``, ``keep_deleted``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from store.digest import hash_of_parts
from store.errors import DiskFailure, VolumeRetired
from store.index import DELETED_BIT, OFFSET_UNIT
from store.volume_base import VolumeBase, pwrite_all, read_header_and_footer
from trenchcoat import needle
from trenchcoat.needle_ref import NeedleRef


class VolumeDelete(VolumeBase):
    """The deletes of ``Volume``."""

    async def delete(self, ref: NeedleRef) -> bool:
        """Flags the needle deleted on disk and in the index; False if it already was."""
        key, alt = ref.key, ref.alternate_key
        entry = self._index.get(key, alt)
        if entry is None:
            raise self._not_found(key, alt)
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
                raise self._not_found(key, alt)
            if entry.deleted:
                return False
            self.io.preads += 1
            try:
                header, footer = await self._in_thread(read_header_and_footer, self._handle.fd, entry.offset)
                found, _ = needle.unpack_header(header)
                value = hash_of_parts(header, footer)[2]
            except needle.NeedleFormatError as exc:
                raise self._damaged(key, alt, entry.offset, f"is damaged ({exc})") from None
            if found.key != key or (cookie is not None and found.cookie != cookie):
                raise self._not_found(key, alt)
            if found.flags & needle.FLAG_DELETED:
                self._index.mark_deleted(key, alt)
                self._count_deleted(entry.size)
                self._digest_remove(key, alt, value)
                return False
            flag = bytes([found.flags | needle.FLAG_DELETED])
            try:
                await self._in_thread(pwrite_all, self._handle.fd, flag, entry.offset + needle.FLAGS_OFFSET)
            except OSError as exc:
                self._fail(f"delete write failed: {exc}")
                raise DiskFailure(f"volume {self.volume_id}: delete failed: {exc}") from exc
            if self._compaction_deletes is not None:
                self._compaction_deletes.add((key, alt))
        await self._commit.wait_durable()
        was = self._index.mark_deleted(key, alt)
        if was is not None and not was.deleted:  # a compaction meanwhile may have applied it already
            self._count_deleted(was.size)
            self._digest_remove(key, alt, value)
        self._changed = True
        return True


def _deleted(fd: int, keys: np.ndarray, alts: np.ndarray, units: np.ndarray,
             sizes: np.ndarray) -> list[tuple[int, int]]:
    """(key, alt) of every needle flagged deleted in the index or on disk (thread)."""
    gone = []
    for key, alt, unit, size in zip(keys.tolist(), alts.tolist(), units.tolist(), sizes.tolist(), strict=True):
        if not size & DELETED_BIT:
            try:
                found, _ = needle.unpack_header(os.pread(fd, needle.HEADER.size, unit * OFFSET_UNIT))
            except needle.NeedleFormatError:
                continue  # damaged: a scrub reports it; it is not a delete
            if not found.flags & needle.FLAG_DELETED:
                continue
        gone.append((key, alt))
    return gone
