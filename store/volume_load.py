"""Creating a volume file and opening one at startup: the recovery path.

``open_volume`` loads the index checkpoint (``store/checkpoint.py``, written by
``Volume.checkpoint``) up to its ``covered_end`` and scans only the tail past it. A torn
tail (a crash mid-append) is truncated. Damage in the middle is not mistaken for a torn
tail: the scan looks for intact needles after it and, finding some, keeps them and leaves
the damaged needle to answer DATA_LOSS. A leftover of an interrupted compaction is removed.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from store import checkpoint
from store.datasync import Datasync
from store.digest import ContentDigest, hash_of_raw
from store.errors import CorruptVolume
from store.index import NeedleIndex
from store.volume import Volume, VolumeLimits
from store.volume_base import pwrite_all, read_needle_hash
from trenchcoat import needle
from trenchcoat.store_types import Damage

log = logging.getLogger(__name__)

SCAN_CHUNK = 8 * 1024 * 1024
"""Bytes of the volume file a startup scan reads at once."""


def volume_path(directory: Path, volume_id: int) -> Path:
    return directory / f"vol-{volume_id}.dat"


def create_volume(directory: Path, volume_id: int, limits: VolumeLimits,
                  executor: ThreadPoolExecutor, datasync: Datasync | None = None) -> Volume:
    """Creates an empty volume file (superblock only), durably."""
    path = volume_path(directory, volume_id)
    superblock = needle.Superblock(volume_id, int(time.time() * 1000))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pwrite_all(fd, superblock.pack(), 0)
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
            index, start, digest = loaded.index, loaded.covered_end, loaded.digest
            # A checkpoint the last shutdown wrote knows every delete; after a crash, deletes
            # made since it was written are flagged only in the needles, until a recount.
            settled = loaded.clean
            if loaded.clean:
                checkpoint.mark_unclean(path.with_suffix(".idx"))
        else:
            index, start, digest, settled = NeedleIndex(), needle.SUPERBLOCK.size, ContentDigest(), True
        end, damage = scan(fd, index, start, size, digest)
        if end < size:
            log.warning("%s: torn tail of %d bytes at %d truncated", path, size - end, end)
            os.ftruncate(fd, end)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return Volume(path, fd, superblock, index, end, limits, executor, datasync, digest, digest_settled=settled), damage


def scan(fd: int, index: NeedleIndex, start: int, size: int,
         digest: ContentDigest | None = None) -> tuple[int, list[Damage]]:
    """Indexes needles from ``start`` to ``size`` (and counts them in ``digest``); returns
    (end of the last intact needle, damaged needles kept in the index)."""
    digest = digest if digest is not None else ContentDigest()
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
        deleted = bool(found.flags & needle.FLAG_DELETED)
        previous = index.put(found.key, found.alternate_key, pos, total, deleted=deleted)
        if previous is not None and not previous.deleted:  # overwritten by this one
            _uncount(fd, digest, found.key, found.alternate_key, previous.offset)
        if not deleted:
            digest.add(found.key, found.alternate_key, hash_of_raw(buf, rel)[2])
        pos += total
    return pos, damage


def _uncount(fd: int, digest: ContentDigest, key: int, alt: int, offset: int) -> None:
    """Takes the needle at ``offset`` out of ``digest`` (it was overwritten)."""
    try:
        digest.remove(key, alt, read_needle_hash(fd, offset)[2])
    except needle.NeedleFormatError:
        log.warning("needle %#x/%d at %d: overwritten, and its header is damaged; the digest is recounted "
                    "by the audit", key, alt, offset)


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
