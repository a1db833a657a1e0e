"""Scrubbing a volume (the ``ScrubVolume`` RPC): every live needle of the index read back
in a thread and verified, so damage is found before a read meets it (a read of a damaged
needle answers DATA_LOSS, ``store/volume_read.py``)."""

from __future__ import annotations

import os

import numpy as np

from store.index import DELETED_BIT, OFFSET_UNIT
from store.volume_base import VolumeBase
from trenchcoat import needle
from trenchcoat.store_types import Damage


class VolumeScrub(VolumeBase):
    """The scrub of ``Volume``."""

    async def scrub(self) -> tuple[int, list[Damage]]:
        """Verifies every needle in the index; returns (checked, damaged)."""
        keys, alts, units, sizes = (a.copy() for a in self._index.arrays())
        handle = self._handle
        fd = handle.acquire()
        try:
            return await self._in_thread(_scrub, fd, keys, alts, units, sizes)
        finally:
            handle.release()


def _scrub(fd: int, keys: np.ndarray, alts: np.ndarray, units: np.ndarray,
           sizes: np.ndarray) -> tuple[int, list[Damage]]:
    """Reads and verifies each live needle of the index arrays (thread)."""
    damaged = []
    checked = 0
    for key, alt, unit, size in zip(keys.tolist(), alts.tolist(), units.tolist(), sizes.tolist(), strict=True):
        if size & DELETED_BIT:
            continue
        checked += 1
        offset = unit * OFFSET_UNIT
        try:
            found, _ = needle.unpack(os.pread(fd, size, offset))
            if found.key != key or found.alternate_key != alt:
                raise needle.NeedleFormatError(f"holds {found.key:#x}/{found.alternate_key}")
        except needle.NeedleFormatError as exc:
            damaged.append(Damage(key, alt, offset, str(exc)))
    return checked, damaged
