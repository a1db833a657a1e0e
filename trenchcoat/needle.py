"""The byte layout of a volume file: a superblock, then needles, appended. Part of the
contract, declared once here: the store writes and reads it (``store/``), and its export
stream (``StoreService.ExportVolume``) carries it to f4, which parses the needles it
encodes (``f4/hot.py``).

Superblock (``SUPERBLOCK``, 64 bytes, at offset 0)::

    offset size field
    0      8    magic            b"TCHAYSTK"
    8      2    format version   FORMAT_VERSION (1)
    10     1    flags            bit 0: read-only
    11     1    reserved         0
    12     4    volume id        u32
    16     8    created          u64 ms since the Unix epoch
    24     4    generation       u32, +1 on every compaction (checkpoints name it)
    28     36   reserved         zeros

Needle (``HEADER`` + data + ``FOOTER`` + padding), at 8-byte-aligned offsets::

    offset   size  field
    0        4     header magic   0x4E45454C
    4        4     cookie         u32, random, chosen at upload; must match on read
    8        8     key            u64, the media_id
    16       4     alternate key  u32, the rendition (0 = original)
    20       1     flags          bit 0: deleted (set in place by a delete)
    21       1     media type     code from ``trenchcoat.media_types`` (0: bytes of no
                                  declared type, and every needle written before types)
    22       2     reserved       zeros
    24       4     data size      u32, bytes of data
    28       n     data
    28+n     4     footer magic   0x464F4F54
    32+n     4     CRC32C of data
    36+n     0..7  padding        zeros, to the next multiple of 8

All integers little-endian. A reader takes the whole needle with one pread of
``stored_size(n)`` bytes and verifies header magic, key, alternate key, cookie, footer
magic and CRC before returning data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import crc32c as _crc32c

SUPERBLOCK = struct.Struct("<8sHBBIQI36x")
SUPERBLOCK_MAGIC = b"TCHAYSTK"
FORMAT_VERSION = 1
SUPERBLOCK_READ_ONLY = 0x01

HEADER = struct.Struct("<IIQIBB2xI")
FOOTER = struct.Struct("<II")
HEADER_MAGIC = 0x4E45454C
FOOTER_MAGIC = 0x464F4F54
ALIGNMENT = 8
FLAG_DELETED = 0x01
#: Offset of the flags byte inside a needle (a delete rewrites just this byte).
FLAGS_OFFSET = 20
#: Largest data size the format can hold (the config sets the real, smaller limit).
MAX_DATA_SIZE = (1 << 31) - 64

assert SUPERBLOCK.size == 64 and HEADER.size == 28 and FOOTER.size == 8


def crc32c(data: bytes | memoryview) -> int:
    return _crc32c.crc32c(data)


def stored_size(data_size: int) -> int:
    """Bytes a needle with ``data_size`` bytes of data occupies, padding included."""
    raw = HEADER.size + data_size + FOOTER.size
    return (raw + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


@dataclass(frozen=True, slots=True)
class Superblock:
    """The fixed header of a volume file."""

    volume_id: int
    """Physical volume id."""
    created_ms: int
    """Creation time, ms since the Unix epoch."""
    generation: int = 0
    """Compaction generation; checkpoints of another generation are ignored."""
    read_only: bool = False
    """Persisted read-only state."""

    def pack(self) -> bytes:
        flags = SUPERBLOCK_READ_ONLY if self.read_only else 0
        return SUPERBLOCK.pack(
            SUPERBLOCK_MAGIC, FORMAT_VERSION, flags, 0, self.volume_id, self.created_ms, self.generation
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Superblock:
        """Raises ValueError when ``raw`` is not a superblock this code understands."""
        if len(raw) < SUPERBLOCK.size:
            raise ValueError(f"superblock is {len(raw)} bytes, expected {SUPERBLOCK.size}")
        magic, version, flags, _, volume_id, created, generation = SUPERBLOCK.unpack_from(raw)
        if magic != SUPERBLOCK_MAGIC:
            raise ValueError(f"bad superblock magic {magic!r}")
        if version != FORMAT_VERSION:
            raise ValueError(f"unknown volume format version {version}")
        return cls(volume_id, created, generation, bool(flags & SUPERBLOCK_READ_ONLY))


@dataclass(frozen=True, slots=True)
class Needle:
    """One needle's fields (the data travels separately)."""

    key: int
    """Needle key: the media_id."""
    alternate_key: int
    """Rendition; 0 is the original."""
    cookie: int
    """Random 32 bits; a read must present the same."""
    flags: int = 0
    """FLAG_DELETED once deleted."""
    media_type: int = 0
    """The data's type (``trenchcoat.media_types`` code): served as its Content-Type."""


class Stored(NamedTuple):
    """A needle's data as a read returns it: verified bytes and their type code."""

    data: bytes
    media_type: int


def pack(needle: Needle, data: bytes | memoryview, crc: int | None = None) -> bytes:
    """The full on-disk bytes of a needle (``crc``: the CRC32C of ``data`` when the caller
    has it already)."""
    size = len(data)
    pad = stored_size(size) - HEADER.size - size - FOOTER.size
    return b"".join(
        (
            HEADER.pack(HEADER_MAGIC, needle.cookie, needle.key, needle.alternate_key, needle.flags,
                        needle.media_type, size),
            data,
            FOOTER.pack(FOOTER_MAGIC, crc32c(data) if crc is None else crc),
            bytes(pad),
        )
    )


class NeedleFormatError(ValueError):
    """Raised by ``unpack`` when bytes are not a whole, intact needle; ``checksum`` tells a
    CRC mismatch (bit rot) from a structural problem (torn or foreign bytes)."""

    def __init__(self, message: str, *, checksum: bool = False) -> None:
        super().__init__(message)
        self.checksum = checksum


def unpack_header(buf: bytes | bytearray | memoryview, at: int = 0) -> tuple[Needle, int]:
    """Parses the header at ``at``; returns the needle's fields and data size."""
    if len(buf) - at < HEADER.size:
        raise NeedleFormatError("truncated header")
    magic, cookie, key, alt, flags, media_type, size = HEADER.unpack_from(buf, at)
    if magic != HEADER_MAGIC:
        raise NeedleFormatError(f"bad header magic {magic:#x}")
    if size > MAX_DATA_SIZE:
        raise NeedleFormatError(f"implausible data size {size}")
    return Needle(key, alt, cookie, flags, media_type), size


def unpack(buf: bytes | bytearray | memoryview, at: int = 0) -> tuple[Needle, memoryview]:
    """Parses and verifies a whole needle at ``at``; returns its fields and data."""
    needle, size = unpack_header(buf, at)
    end = at + HEADER.size + size
    if len(buf) < end + FOOTER.size:
        raise NeedleFormatError("truncated needle")
    magic, crc = FOOTER.unpack_from(buf, end)
    if magic != FOOTER_MAGIC:
        raise NeedleFormatError(f"bad footer magic {magic:#x}")
    data = memoryview(buf)[at + HEADER.size:end]
    if crc32c(data) != crc:
        raise NeedleFormatError("data checksum mismatch", checksum=True)
    return needle, data
