"""What a catch-up needs of one copy of a volume: its needles listed by digest bucket, with
each one's digest hash and deleted flag as the disk has them (``store/catchup.py``
compares two listings and moves only what differs)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import numpy as np

from store.digest import BUCKETS
from store.index import DELETED_BIT, OFFSET_UNIT, SIZE_MASK
from store.volume_base import VolumeBase, read_needle_hash
from trenchcoat import needle
from trenchcoat.store_types import NeedleSummary

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def buckets_of(keys: np.ndarray, alts: np.ndarray) -> np.ndarray:
    """``digest.bucket_of`` of each (key, alternate key), vectorised (uint64 wraps)."""
    with np.errstate(over="ignore"):
        mixed = (keys.astype(np.uint64) ^ (alts.astype(np.uint64) << np.uint64(40))) * _GOLDEN
    return (mixed >> np.uint64(56)).astype(np.int64)


class VolumeSync(VolumeBase):
    """The listing of ``Volume``."""

    async def list_needles(self, buckets: Collection[int] = ()) -> list[NeedleSummary]:
        """Every needle of ``buckets`` (all when empty), deleted ones included, read from
        disk in a thread (a flag the index missed is seen)."""
        keys, alts, units, sizes = (a.copy() for a in self._index.arrays())
        if buckets and len(buckets) < BUCKETS:
            chosen = np.isin(buckets_of(keys, alts), np.fromiter(buckets, dtype=np.int64))
            keys, alts, units, sizes = keys[chosen], alts[chosen], units[chosen], sizes[chosen]
        handle = self._handle
        fd = handle.acquire()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, _listed, fd, keys.tolist(), alts.tolist(), units.tolist(), sizes.tolist())
        finally:
            handle.release()


def _listed(fd: int, keys: list[int], alts: list[int], units: list[int], sizes: list[int]) -> list[NeedleSummary]:
    out = []
    for key, alt, unit, size in zip(keys, alts, units, sizes, strict=True):
        stored = size & SIZE_MASK
        if size & DELETED_BIT:
            out.append(NeedleSummary(key, alt, 0, True, stored))
            continue
        try:
            _, _, value, deleted = read_needle_hash(fd, unit * OFFSET_UNIT)
        except (needle.NeedleFormatError, OSError):
            value, deleted = 0, False
        out.append(NeedleSummary(key, alt, 0 if deleted else value, deleted, stored))
    return out

