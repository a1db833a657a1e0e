"""Auditing a volume and mending one needle: the hot tier's healing, on one copy.

- ``audit_snapshot`` / ``audit_step``: the background audit (``store/audit.py`` paces it)
  walks the live needles in file order, a budget of bytes at a time, reading each whole
  and checking its header, that it is the needle the index names there, and its CRC. A
  needle flagged deleted on disk that the index still counts live (deleted after the last
  checkpoint, then a crash) is taken out of the index and the digest there and then.
- ``recount``: the content digest counted again from every live needle's header and
  footer, for a copy opened after a crash (``Volume.digest_settled``).
- ``copy_needle`` / ``replace_needle``: a healthy replica's verified bytes of a needle, and
  writing them over this copy's damaged needle in place, durably.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from store.digest import BUCKETS, ContentDigest, bucket_of, hash_of_raw
from store.errors import NeedleNotFound, NeedleSizeDiffers, VolumeRetired
from store.index import DELETED_BIT, OFFSET_UNIT, SIZE_MASK
from store.volume_base import VolumeBase, pwrite_all, read_needle_hash
from trenchcoat import needle
from trenchcoat.store_types import Finding

DAMAGED = "damaged"
"""The needle's data fails its CRC (bit rot)."""
UNREADABLE = "unreadable"
"""Its header or footer does not parse, or the disk would not read it."""
INDEX = "index"
"""The index points at bytes of another needle."""


@dataclass(slots=True)
class AuditCursor:
    """One pass over one volume: the live needles when it began, in file order."""

    generation: int
    keys: np.ndarray
    alts: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    at: int = 0
    """Next needle of the arrays to audit."""

    @property
    def done(self) -> bool:
        return self.at >= len(self.keys)


@dataclass(frozen=True, slots=True)
class AuditStep:
    checked: int
    bytes_read: int
    findings: list[Finding]


class VolumeAudit(VolumeBase):
    """The audit and the needle repairs of ``Volume``."""

    def audit_snapshot(self) -> AuditCursor:
        keys, alts, units, sizes = self._index.arrays()
        live = (sizes & DELETED_BIT) == 0
        order = np.argsort(units[live], kind="stable")
        return AuditCursor(self.superblock.generation, keys[live][order].copy(), alts[live][order].copy(),
                           units[live][order].astype(np.uint64) * OFFSET_UNIT, (sizes[live][order] & SIZE_MASK).copy())

    async def audit_step(self, cursor: AuditCursor, budget_bytes: int, executor: Executor) -> AuditStep:
        """Audits the cursor's next needles, about ``budget_bytes`` of them (at least one),
        in ``executor`` (the audit's own thread, so reads never queue behind it)."""
        if cursor.generation != self.superblock.generation or self._retired:
            # Compacted meanwhile (needles moved), or replaced by a repair or freed (its
            # descriptor may be closed): this pass is done with this copy.
            cursor.at = len(cursor.keys)
            return AuditStep(0, 0, [])
        first, last, total = cursor.at, cursor.at, 0
        while last < len(cursor.keys) and (last == first or total + int(cursor.sizes[last]) <= budget_bytes):
            total += int(cursor.sizes[last])
            last += 1
        cursor.at = last
        spans = [(int(k), int(a), int(o), int(s)) for k, a, o, s in zip(
            cursor.keys[first:last].tolist(), cursor.alts[first:last].tolist(),
            cursor.offsets[first:last].tolist(), cursor.sizes[first:last].tolist(), strict=True)]
        handle = self._handle
        fd = handle.acquire()
        try:
            verdicts = await asyncio.get_running_loop().run_in_executor(executor, _audit, fd, spans)
        finally:
            handle.release()
        findings = []
        for (key, alt, offset, size), verdict in zip(spans, verdicts, strict=True):
            entry = self._index.get(key, alt)
            if entry is None or entry.deleted or entry.offset != offset or handle is not self._handle:
                continue  # deleted, overwritten or moved since the pass began
            if verdict is None:
                continue
            kind, reason, value = verdict
            if kind == "deleted":  # flagged on disk after the last checkpoint: the index learns it
                self._index.mark_deleted(key, alt)
                self._count_deleted(size)
                self._digest_remove(key, alt, value)
                self._changed = True
                continue
            findings.append(Finding(self.volume_id, key, alt, offset, size, kind, reason))
        return AuditStep(len(spans), total, findings)

    async def recount(self, executor: Executor, *, batch: int = 4096) -> int:
        """Counts the content digest again from every live needle's header and footer on
        disk (``read_needle_hash``) while writes and deletes go on (each is journaled and
        applied to the result), and takes the flags it finds into the index. Returns how
        many needles the index counted live that are deleted on disk."""
        if self._retired:
            return 0
        snapshot = self.audit_snapshot()
        journal: list[tuple[int, int, int, int]] = []
        self._digest_journal = journal
        loop = asyncio.get_running_loop()
        values = np.zeros(len(snapshot.keys), dtype=np.uint64)
        gone: list[int] = []
        try:
            handle = self._handle
            fd = handle.acquire()
            try:
                for start in range(0, len(snapshot.keys), batch):
                    offsets = snapshot.offsets[start:start + batch].tolist()
                    for i, (value, deleted) in enumerate(await loop.run_in_executor(executor, _hashes, fd, offsets),
                                                         start):
                        values[i] = np.uint64(value)
                        if deleted:
                            gone.append(i)
            finally:
                handle.release()
            if self._digest_journal is not journal or snapshot.generation != self.superblock.generation:
                return 0  # a compaction counted it afresh meanwhile
            for i in gone:
                values[i] = np.uint64(0)
            fresh = _digest_of(snapshot.keys, snapshot.alts, values)
            counted = {(int(k), int(a)): int(v) for k, a, v in zip(
                snapshot.keys.tolist(), snapshot.alts.tolist(), values.tolist(), strict=True) if v}
            added: dict[tuple[int, int, int], int] = {}
            for sign, key, alt, value in journal:
                if sign > 0:
                    fresh.add(key, alt, value)
                    added[key, alt, value] = added.get((key, alt, value), 0) + 1
                elif counted.get((key, alt)) == value:
                    fresh.remove(key, alt, value)
                    del counted[key, alt]
                elif added.get((key, alt, value)):
                    fresh.remove(key, alt, value)
                    added[key, alt, value] -= 1
            fixed = 0
            for i in gone:
                key, alt = int(snapshot.keys[i]), int(snapshot.alts[i])
                entry = self._index.get(key, alt)
                if entry is not None and not entry.deleted and entry.offset == int(snapshot.offsets[i]):
                    self._index.mark_deleted(key, alt)
                    self._count_deleted(entry.size)
                    self._changed = True
                    fixed += 1
            self.digest = fresh
            self.digest_settled = True
            return fixed
        finally:
            if self._digest_journal is journal:
                self._digest_journal = None

    async def copy_needle(self, key: int, alt: int) -> bytes:
        """The needle's whole stored bytes, verified (a deleted one with its flag)."""
        entry = self._index.get(key, alt)
        if entry is None:
            raise self._not_found(key, alt)
        handle = self._handle
        fd = handle.acquire()
        try:
            raw = await self._in_thread(os.pread, fd, entry.size, entry.offset)
        finally:
            handle.release()
        self.io.preads += 1
        _check(self, raw, key, alt, entry.offset)
        return raw

    async def replace_needle(self, raw: bytes) -> bool:
        """Writes ``raw`` (a healthy replica's verified bytes of a needle this copy indexes)
        over this copy's needle in place, durably, then reads it back verified. False when
        this copy's needle verified already (nothing written)."""
        try:
            found, _ = needle.unpack(raw)
        except needle.NeedleFormatError as exc:
            raise NeedleSizeDiffers(f"the source's needle does not verify ({exc})") from None
        key, alt = found.key, found.alternate_key
        async with self._compact_lock, self._append_lock:  # no compaction copies it meanwhile
            if self._retired:
                raise VolumeRetired(f"volume {self.volume_id} is being replaced by a repair")
            entry = self._index.get(key, alt)
            if entry is None:
                raise NeedleNotFound(f"needle {key:#x}/{alt} is not in volume {self.volume_id} here: "
                                     "the copies differ, a volume repair's work")
            if entry.size != len(raw):
                raise NeedleSizeDiffers(f"needle {key:#x}/{alt} is {entry.size} bytes here and {len(raw)} at "
                                        "the source: the copies differ, a volume repair's work")
            fd = self._handle.fd
            current = await self._in_thread(os.pread, fd, entry.size, entry.offset)
            if current == raw:
                return False
            await self._in_thread(pwrite_all, fd, raw, entry.offset)
            await self._in_thread(os.fdatasync, fd)
            self.io.fsyncs += 1
            back = await self._in_thread(os.pread, fd, entry.size, entry.offset)
            if back != raw:
                raise self._damaged(key, alt, entry.offset, "still differs from the source after the rewrite")
            if found.flags & needle.FLAG_DELETED and not entry.deleted:
                self._index.mark_deleted(key, alt)
                self._count_deleted(entry.size)
                self._digest_remove(key, alt, hash_of_raw(raw)[2])
                self._changed = True
            return True


def _check(volume: VolumeBase, raw: bytes, key: int, alt: int, offset: int) -> None:
    try:
        found, _ = needle.unpack(raw)
    except needle.NeedleFormatError as exc:
        raise volume._damaged(key, alt, offset, f"failed verification ({exc})") from None
    if found.key != key or found.alternate_key != alt:
        raise volume._damaged(key, alt, offset, f"holds {found.key:#x}/{found.alternate_key} instead")


def _audit(fd: int, spans: Sequence[tuple[int, int, int, int]]) -> list[tuple[str, str, int] | None]:
    """Verifies each (key, alt, offset, size) (thread): None when sound, else (kind, why,
    hash) with kind one of DAMAGED, UNREADABLE, INDEX or "deleted" (flagged on disk)."""
    out: list[tuple[str, str, int] | None] = []
    for key, alt, offset, size in spans:
        try:
            raw = os.pread(fd, size, offset)
        except OSError as exc:
            out.append((UNREADABLE, f"read failed: {exc}", 0))
            continue
        try:
            found, _ = needle.unpack_header(raw)
            if found.key != key or found.alternate_key != alt:
                out.append((INDEX, f"the index names {key:#x}/{alt} here, the bytes hold "
                                   f"{found.key:#x}/{found.alternate_key}", 0))
                continue
            if found.flags & needle.FLAG_DELETED:
                out.append(("deleted", "", hash_of_raw(raw)[2]))
                continue
            needle.unpack(raw)
        except needle.NeedleFormatError as exc:
            out.append((DAMAGED if exc.checksum else UNREADABLE, str(exc), 0))
            continue
        out.append(None)
    return out


def _hashes(fd: int, offsets: Sequence[int]) -> list[tuple[int, bool]]:
    """(digest hash, deleted on disk) of the needle at each offset (thread); (0, False)
    for one whose header or footer is damaged (the audit reports it)."""
    out = []
    for offset in offsets:
        try:
            _, _, value, deleted = read_needle_hash(fd, offset)
        except (needle.NeedleFormatError, OSError):
            value, deleted = 0, False
        out.append((value, deleted))
    return out


def _digest_of(keys: np.ndarray, alts: np.ndarray, values: np.ndarray) -> ContentDigest:
    digest = ContentDigest()
    buckets = np.fromiter((bucket_of(int(k), int(a)) for k, a in zip(keys.tolist(), alts.tolist(), strict=True)),
                          dtype=np.int64, count=len(keys))
    sums = np.zeros(BUCKETS, dtype=np.uint64)
    np.add.at(sums, buckets, values)  # uint64 arithmetic wraps: sums modulo 2**64
    digest.sums = sums
    return digest
