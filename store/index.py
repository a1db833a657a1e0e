"""The in-RAM needle index of one volume: (key, alternate key) -> (offset, size, flags).

Haystack works because this map fits in memory: one lookup here, then one disk read.
A dict of tuples costs ~200 bytes a needle; this costs ~20 (measured by
``bench.store``'s ``index_bytes_per_needle``):

- a *main* part of four parallel numpy arrays sorted by (key, alternate key)::

      keys     u64   needle key
      alts     u32   alternate key
      offsets  u32   offset / 8 (needles are 8-byte aligned: volumes up to 32 GiB)
      sizes    u32   stored size; bit 31 set = deleted

  looked up by binary search (``np.searchsorted``) and updated in place;
- a small *buffer* dict of recent inserts, merged into the main arrays in one
  O(n + m) pass when it holds more than 1/64 of the entries (at least 4096).

Loading a checkpoint hands sorted arrays straight to ``from_arrays``: no per-needle work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OFFSET_UNIT = 8
MAX_OFFSET = (1 << 32) * OFFSET_UNIT - OFFSET_UNIT
DELETED_BIT = 1 << 31
SIZE_MASK = DELETED_BIT - 1
_MIN_BUFFER = 4096
_BUFFER_FRACTION = 64


@dataclass(frozen=True, slots=True)
class Entry:
    """Where a needle is."""

    offset: int
    """Byte offset of the needle in the volume file."""
    size: int
    """Stored size: header, data, footer and padding."""
    deleted: bool
    """True once deleted."""


class NeedleIndex:
    """(key, alternate key) -> Entry for one volume. Not thread-safe: one event loop owns it."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._alts = np.empty(0, dtype=np.uint32)
        self._offsets = np.empty(0, dtype=np.uint32)
        self._sizes = np.empty(0, dtype=np.uint32)
        # (key << 32 | alt) -> (offset_units << 32 | size_with_flag)
        self._buffer: dict[int, int] = {}

    @classmethod
    def from_arrays(
        cls, keys: np.ndarray, alts: np.ndarray, offsets: np.ndarray, sizes: np.ndarray
    ) -> NeedleIndex:
        """An index over arrays sorted by (key, alt) with no duplicates (a checkpoint)."""
        index = cls()
        index._keys = np.ascontiguousarray(keys, dtype=np.uint64)
        index._alts = np.ascontiguousarray(alts, dtype=np.uint32)
        index._offsets = np.ascontiguousarray(offsets, dtype=np.uint32)
        index._sizes = np.ascontiguousarray(sizes, dtype=np.uint32)
        return index

    def __len__(self) -> int:
        return len(self._keys) + len(self._buffer)

    def get(self, key: int, alt: int) -> Entry | None:
        packed = self._buffer.get(key << 32 | alt)
        if packed is not None:
            return _entry(packed >> 32, packed & 0xFFFFFFFF)
        i = self._find(key, alt)
        if i < 0:
            return None
        return _entry(int(self._offsets[i]), int(self._sizes[i]))

    def put(self, key: int, alt: int, offset: int, size: int, *, deleted: bool = False) -> Entry | None:
        """Points (key, alt) at a needle; returns the entry it replaced, if any."""
        if offset % OFFSET_UNIT or not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"offset {offset} is not an 8-aligned offset below 32 GiB")
        if not 0 < size <= SIZE_MASK:
            raise ValueError(f"size {size} out of range")
        units, stored = offset // OFFSET_UNIT, size | (DELETED_BIT if deleted else 0)
        composite = key << 32 | alt
        previous = self._buffer.get(composite)
        if previous is not None:
            self._buffer[composite] = units << 32 | stored
            return _entry(previous >> 32, previous & 0xFFFFFFFF)
        i = self._find(key, alt)
        if i >= 0:
            old = _entry(int(self._offsets[i]), int(self._sizes[i]))
            self._offsets[i], self._sizes[i] = units, stored
            return old
        self._buffer[composite] = units << 32 | stored
        if len(self._buffer) > max(_MIN_BUFFER, len(self._keys) // _BUFFER_FRACTION):
            self._merge()
        return None

    def mark_deleted(self, key: int, alt: int) -> Entry | None:
        """Flags (key, alt) deleted; returns its entry as it was (None if absent)."""
        entry = self.get(key, alt)
        if entry is not None and not entry.deleted:
            self.put(key, alt, entry.offset, entry.size, deleted=True)
        return entry

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys, alts, offset units, sizes with flag), sorted by (key, alt). Views: copy
        before the index changes again."""
        self._merge()
        return self._keys, self._alts, self._offsets, self._sizes

    def nbytes(self) -> int:
        """Bytes held by the arrays (the buffer is measured with tracemalloc by the bench)."""
        return self._keys.nbytes + self._alts.nbytes + self._offsets.nbytes + self._sizes.nbytes

    def _find(self, key: int, alt: int) -> int:
        keys = self._keys
        k = np.uint64(key)
        i = int(np.searchsorted(keys, k))
        n = len(keys)
        while i < n and keys[i] == k:
            if self._alts[i] == alt:
                return i
            i += 1
        return -1

    def _merge(self) -> None:
        if not self._buffer:
            return
        items = sorted(self._buffer.items())
        self._buffer = {}
        m = len(items)
        bkeys = np.fromiter((c >> 32 for c, _ in items), dtype=np.uint64, count=m)
        balts = np.fromiter((c & 0xFFFFFFFF for c, _ in items), dtype=np.uint32, count=m)
        packed = np.fromiter((p for _, p in items), dtype=np.uint64, count=m)
        n = len(self._keys)
        pos = np.searchsorted(self._keys, bkeys, side="left")
        inside = np.nonzero(pos < n)[0]
        # Keys already present (other renditions): place after their smaller alternate keys.
        for j in inside[self._keys[pos[inside]] == bkeys[inside]]:
            p = int(pos[j])
            while p < n and self._keys[p] == bkeys[j] and self._alts[p] < balts[j]:
                p += 1
            pos[j] = p
        self._keys = np.insert(self._keys, pos, bkeys)
        self._alts = np.insert(self._alts, pos, balts)
        self._offsets = np.insert(self._offsets, pos, (packed >> np.uint64(32)).astype(np.uint32))
        self._sizes = np.insert(self._sizes, pos, (packed & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def _entry(units: int, stored: int) -> Entry:
    return Entry(units * OFFSET_UNIT, stored & SIZE_MASK, bool(stored & DELETED_BIT))
