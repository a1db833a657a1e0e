"""store/volume_commit.py: concurrent writers share fdatasyncs (a failed one is tested with
each fdatasync in test_datasync.py)."""

from __future__ import annotations

import asyncio
import os

from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n


async def test_concurrent_writers_share_fsyncs(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await asyncio.gather(*(v.write(n(i, 0, i), os.urandom(64)) for i in range(200)))
    assert v.io.synced_writes == 200
    assert v.io.fsyncs < 200  # group commit: some syncs covered several writes
    assert v.stats.needles == 200
