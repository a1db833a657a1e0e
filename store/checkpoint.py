"""The index checkpoint of one volume: the whole NeedleIndex on disk, so a restart loads
it in one read and scans only the volume's tail past ``covered_end``.

File ``vol-<id>.idx``, written to a temporary file, fsynced, then renamed over the old one::

    offset size field
    0      8    magic          b"TCINDEX1"
    8      2    format version 2
    10     1    flags          bit 0: clean (written by a shutdown: no delete can have
                               followed it; cleared on disk when the volume is opened)
    11     1    reserved
    12     4    volume id      u32
    16     4    generation     u32, must equal the volume superblock's (else: ignored)
    20     4    CRC32C of the digest and the entries
    24     8    covered end    u64: every needle before this offset is in the entries
    32     8    entry count    u64
    40     24   reserved
    64     2048 digest         the content digest's 256 bucket sums, u64 each
                               (``store/digest.py``) of the entries' live needles
    2112   20n  entries        key u64, alternate key u32, offset/8 u32, size|deleted<<31 u32

A checkpoint that is missing, torn, of another generation or version (version 1 had no
digest) or fails its CRC is ignored and the volume is scanned whole: it is a cache of the
volume file, never the truth. A checkpoint that is not clean may count as live a needle
deleted after it was written (deletes set a flag in place, found again by reads): the
volume's digest is then recounted from disk in the background (``VolumeAudit.recount``).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store.digest import BUCKETS, ContentDigest
from store.index import NeedleIndex
from trenchcoat import needle

log = logging.getLogger(__name__)

HEADER = struct.Struct("<8sHBxIIIQQ24x")
MAGIC = b"TCINDEX1"
VERSION = 2
FLAG_CLEAN = 0x01
FLAGS_OFFSET = 10
DIGEST_BYTES = BUCKETS * 8
ENTRY = np.dtype([("key", "<u8"), ("alt", "<u4"), ("offset", "<u4"), ("size", "<u4")])
assert HEADER.size == 64 and ENTRY.itemsize == 20


@dataclass(frozen=True, slots=True)
class Checkpoint:
    index: NeedleIndex
    covered_end: int
    digest: ContentDigest
    clean: bool
    """Written by a shutdown: the index knows every delete."""


def write(path: Path, volume_id: int, generation: int, covered_end: int,
          arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], digest: ContentDigest,
          *, clean: bool = False) -> None:
    """Writes a checkpoint atomically (tmp file, fsync, rename, fsync the directory)."""
    keys, alts, offsets, sizes = arrays
    body = np.empty(len(keys), dtype=ENTRY)
    body["key"], body["alt"], body["offset"], body["size"] = keys, alts, offsets, sizes
    raw = digest.to_bytes() + body.tobytes()
    header = HEADER.pack(MAGIC, VERSION, FLAG_CLEAN if clean else 0, volume_id, generation, needle.crc32c(raw),
                         covered_end, len(keys))
    tmp = path.with_suffix(".idx.tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load(path: Path, volume_id: int, generation: int) -> Checkpoint | None:
    """The checkpoint at ``path`` if it is whole and belongs to this volume generation."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < HEADER.size:
        log.warning("%s: truncated checkpoint ignored", path)
        return None
    magic, version, flags, vid, gen, crc, covered, count = HEADER.unpack_from(raw)
    body = memoryview(raw)[HEADER.size:]
    problem = (
        "bad magic" if magic != MAGIC else
        f"format version {version}, this store writes {VERSION}" if version != VERSION else
        f"volume {vid}" if vid != volume_id else
        f"generation {gen} (volume is at {generation})" if gen != generation else
        "length" if len(body) != DIGEST_BYTES + count * ENTRY.itemsize else
        "checksum" if needle.crc32c(body) != crc else ""
    )
    if problem:
        log.warning("%s: checkpoint ignored (%s); scanning the volume", path, problem)
        return None
    digest = ContentDigest.from_bytes(body[:DIGEST_BYTES])
    entries = np.frombuffer(body[DIGEST_BYTES:], dtype=ENTRY)
    index = NeedleIndex.from_arrays(
        entries["key"].copy(), entries["alt"].copy(), entries["offset"].copy(), entries["size"].copy()
    )
    return Checkpoint(index, covered, digest, bool(flags & FLAG_CLEAN))


def mark_unclean(path: Path) -> None:
    """Clears the clean flag of the checkpoint at ``path`` durably (before the volume it
    describes takes a delete the checkpoint will not know)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, bytes([0]), FLAGS_OFFSET)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
