"""A volume's content digest: what its live needles are, in a few bytes, so the Directory
sees two replicas differ when one needle differs (not only when their counts do).

Each live needle contributes a 64-bit hash of its key, alternate key, cookie, flags and
the CRC32C its footer stores (the data as it was written: rot in the data does not change
the digest, the audit finds that). The contributions are summed modulo 2**64 into one of
``BUCKETS`` buckets chosen by (key, alternate key), so:

- the digest is kept current as needles come and go (add on an append, subtract on a
  delete or an overwrite), never recomputed by a scan on a probe;
- it does not depend on where needles sit in the file, so a compacted replica and one
  that is not, or one that received its needles in another order, still agree;
- two replicas that differ show which buckets differ, and only those need listing.

A deleted needle contributes nothing (the same as one never written): a replica that
lacks a needle deleted elsewhere holds the same content. The bucket sums are kept in the
index checkpoint (``store/checkpoint.py``), so a restart loads them with the index.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from trenchcoat import needle

BUCKETS = 256
_FIELDS = struct.Struct("<QIIBI")
_MASK = (1 << 64) - 1


def needle_hash(key: int, alternate_key: int, cookie: int, flags: int, crc: int) -> int:
    """The 64-bit contribution of one live needle (the deleted flag is not part of it)."""
    fields = _FIELDS.pack(key, alternate_key, cookie, flags & ~needle.FLAG_DELETED & 0xFF, crc)
    return int.from_bytes(hashlib.blake2b(fields, digest_size=8).digest(), "little")


def bucket_of(key: int, alternate_key: int) -> int:
    """The bucket (key, alternate key) counts in, the same on every replica."""
    mixed = ((key ^ (alternate_key << 40)) * 0x9E3779B97F4A7C15) & _MASK
    return mixed >> 56


def hash_of_raw(raw: bytes | bytearray | memoryview, at: int = 0) -> tuple[int, int, int, bool]:
    """(key, alternate key, hash, deleted) of the needle whose bytes start at ``at``: its
    header and the CRC its footer stores (the data is not verified).
    Raises ``needle.NeedleFormatError`` when the header or footer does not parse."""
    _, size = needle.unpack_header(raw, at)
    footer = at + needle.HEADER.size + size
    return hash_of_parts(bytes(raw[at:at + needle.HEADER.size]), bytes(raw[footer:footer + needle.FOOTER.size]))


def hash_of_parts(header: bytes, footer: bytes) -> tuple[int, int, int, bool]:
    """(key, alternate key, hash, deleted) from a needle's header and footer bytes."""
    found, _ = needle.unpack_header(header)
    if len(footer) < needle.FOOTER.size:
        raise needle.NeedleFormatError("truncated needle")
    magic, crc = needle.FOOTER.unpack(footer)
    if magic != needle.FOOTER_MAGIC:
        raise needle.NeedleFormatError(f"bad footer magic {magic:#x}")
    value = needle_hash(found.key, found.alternate_key, found.cookie, found.flags, crc)
    return found.key, found.alternate_key, value, bool(found.flags & needle.FLAG_DELETED)


class ContentDigest:
    """The bucket sums of one volume's live needles. Not thread-safe: the volume's event
    loop owns it (a thread that builds one hands it over whole)."""

    __slots__ = ("sums",)

    def __init__(self, sums: np.ndarray | None = None) -> None:
        self.sums = np.zeros(BUCKETS, dtype=np.uint64) if sums is None else np.array(sums, dtype=np.uint64)
        if self.sums.shape != (BUCKETS,):
            raise ValueError(f"a content digest has {BUCKETS} buckets, got {self.sums.shape}")

    def add(self, key: int, alternate_key: int, value: int) -> None:
        b = bucket_of(key, alternate_key)
        self.sums[b] = np.uint64((int(self.sums[b]) + value) & _MASK)

    def remove(self, key: int, alternate_key: int, value: int) -> None:
        b = bucket_of(key, alternate_key)
        self.sums[b] = np.uint64((int(self.sums[b]) - value) & _MASK)

    def value(self) -> bytes:
        """16 bytes naming the whole content: equal on two replicas exactly when (but for
        a 2**-64 chance) their live needles are."""
        return hashlib.blake2b(self.sums.astype("<u8").tobytes(), digest_size=16).digest()

    def to_bytes(self) -> bytes:
        return self.sums.astype("<u8").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> ContentDigest:
        return cls(np.frombuffer(raw, dtype="<u8").astype(np.uint64))

    def copy(self) -> ContentDigest:
        return ContentDigest(self.sums.copy())

    def differing_buckets(self, other_sums: np.ndarray) -> list[int]:
        return [int(b) for b in np.nonzero(self.sums != other_sums)[0]]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContentDigest) and bool((self.sums == other.sums).all())

    __hash__ = None  # type: ignore[assignment]
