"""Compacting a volume: reclaiming the bytes of deleted and overwritten needles.

Compaction copies live needles to ``vol-<id>.dat.compact`` while reads and writes go on
(phase 1, in a thread), catches up the tail under the append lock (phase 2: needles
written and deletes made meanwhile), then renames it over the volume file, with a
checkpoint of the new generation renamed over the old one. A crash before the rename
leaves the old file whole (the leftover is removed at startup, ``store/volume_load.py``);
a crash between the data and checkpoint renames leaves a checkpoint of the old
generation, which is then ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from store import checkpoint
from store.digest import ContentDigest, hash_of_raw
from store.errors import VolumeRetired
from store.index import DELETED_BIT, OFFSET_UNIT, NeedleIndex
from store.volume_base import Handle, VolumeBase, pwrite_all
from trenchcoat import needle

log = logging.getLogger(__name__)

Placed = tuple[int, int, int, int, int]
"""A needle copied by phase 1: (key, alternate key, offset in the new file, size, digest hash)."""


class VolumeCompact(VolumeBase):
    """The compaction of ``Volume``."""

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
            deletes: set[tuple[int, int]] = set()
            self._compaction_deletes = deletes  # deletes made meanwhile, applied in phase 2
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
                        new_index, new_end, new_digest = await self._in_thread(
                            _finish_compaction, self._handle.fd, new_fd, new_sb, placed,
                            snapshot_end, self._end, deletes,
                        )
                        await self._in_thread(
                            checkpoint.write, self.index_path.with_suffix(".idx.compact"),
                            self.volume_id, generation, new_end, new_index.arrays(), new_digest,
                        )
                        os.replace(tmp, self.path)
                        os.replace(self.index_path.with_suffix(".idx.compact"), self.index_path)
                        checkpoint.fsync_dir(self.path.parent)
                        old = self._handle
                        self._handle = Handle(new_fd)
                        old.retire()
                        self._index = new_index
                        self._end = new_end
                        # Counted from every live needle's bytes as they were copied: exact,
                        # whatever the old digest missed.
                        self.digest = new_digest
                        self.digest_settled = True
                        if self._digest_journal is not None:
                            self._digest_journal = None  # a recount under way is abandoned
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


def _copy_live(src: int, dst: int, sb: needle.Superblock, keys: np.ndarray, alts: np.ndarray,
               units: np.ndarray, sizes: np.ndarray, before: int) -> list[Placed]:
    """Compaction phase 1 (thread): copies the live needles that start before ``before``
    (the rest are the tail's, copied in phase 2) in offset order; returns (key, alt, new
    offset, size, digest hash) for each."""
    pwrite_all(dst, sb.pack(), 0)
    live = ((sizes & DELETED_BIT) == 0) & (units.astype(np.uint64) * OFFSET_UNIT < before)
    order = units[live].argsort()
    k, a, u, s = keys[live][order], alts[live][order], units[live][order], sizes[live][order]
    out = needle.SUPERBLOCK.size
    placed = []
    for key, alt, unit, size in zip(k.tolist(), a.tolist(), u.tolist(), s.tolist(), strict=True):
        raw = os.pread(src, size, unit * OFFSET_UNIT)
        if len(raw) == size and raw[needle.FLAGS_OFFSET] & needle.FLAG_DELETED:
            continue  # deleted after the last checkpoint
        pwrite_all(dst, raw, out)
        placed.append((key, alt, out, size, _hash_or_zero(raw)))
        out += size
    return placed


def _finish_compaction(src: int, dst: int, sb: needle.Superblock, placed: list[Placed], snapshot_end: int,
                       end: int, deletes: Iterable[tuple[int, int]]) -> tuple[NeedleIndex, int, ContentDigest]:
    """Compaction phase 2 (thread, append lock held): copy needles written since the
    snapshot, apply deletes made meanwhile, sync; returns (new index, new end, its digest)."""
    index = NeedleIndex()
    hashes: dict[tuple[int, int], int] = {}
    out = needle.SUPERBLOCK.size
    for key, alt, offset, size, value in placed:
        index.put(key, alt, offset, size)
        hashes[key, alt] = value
        out = offset + size
    pos = snapshot_end
    while pos < end:
        found, data_size = needle.unpack_header(os.pread(src, needle.HEADER.size, pos))
        total = needle.stored_size(data_size)
        raw = os.pread(src, total, pos)
        if not raw[needle.FLAGS_OFFSET] & needle.FLAG_DELETED:
            pwrite_all(dst, raw, out)
            index.put(found.key, found.alternate_key, out, total)
            hashes[found.key, found.alternate_key] = _hash_or_zero(raw)
            out += total
        pos += total
    for key, alt in deletes:
        entry = index.get(key, alt)
        if entry is not None and not entry.deleted:
            raw = os.pread(dst, needle.HEADER.size, entry.offset)
            pwrite_all(dst, bytes([raw[needle.FLAGS_OFFSET] | needle.FLAG_DELETED]),
                       entry.offset + needle.FLAGS_OFFSET)
            index.mark_deleted(key, alt)
            hashes.pop((key, alt), None)
    pwrite_all(dst, sb.pack(), 0)
    os.fsync(dst)
    digest = ContentDigest()
    for (key, alt), value in hashes.items():
        digest.add(key, alt, value)
    return index, out, digest


def _hash_or_zero(raw: bytes) -> int:
    """A copied needle's digest hash; 0 when its header or footer is damaged (the audit
    reports it; a repair that rewrites it makes a recount settle the digest)."""
    try:
        return hash_of_raw(raw)[2]
    except needle.NeedleFormatError:
        return 0
