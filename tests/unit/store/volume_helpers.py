"""What the tests of ``store/volume*.py`` share: limits, needle references of volume 1 (the
one they create), reopening it as a restart would, and emptying the page cache."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from store.volume import Volume, VolumeLimits
from store.volume_load import open_volume, volume_path
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Damage

LIMITS = VolumeLimits(capacity_bytes=64 * 1024 * 1024, max_needle_bytes=1024 * 1024)


def n(key: int, alt: int, cookie: int) -> NeedleRef:
    """A needle of volume 1 (the one these tests create), named like the old positional calls."""
    return NeedleRef(logical_volume=1, key=key, alternate_key=alt, cookie=cookie)


def reopen(directory: Path, executor: ThreadPoolExecutor, limits: VolumeLimits = LIMITS) -> tuple[Volume, list[Damage]]:
    """Volume 1 opened again from its files, as at a restart (after a crash if it was not closed)."""
    return open_volume(volume_path(directory, 1), limits, executor)


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
