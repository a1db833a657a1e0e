"""store/volume.py: the lifecycle of a volume copy: a checkpoint only when something changed,
close with a final one, and a copy retired for a repair that takes no write nor writes a
checkpoint any more while its reads go on until it is detached."""

from __future__ import annotations

import os

import pytest

from store.errors import VolumeReadOnly
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen


async def test_a_checkpoint_is_written_only_when_something_changed(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    assert not await v.checkpoint()
    await v.write(n(1, 0, 1), b"a")
    assert await v.checkpoint()
    assert not await v.checkpoint()
    await v.delete(n(1, 0, 1))
    assert await v.checkpoint()


async def test_close_writes_the_final_checkpoint(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(1, 11):
        await v.write(n(i, 0, i), b"b" * 10)
    await v.close()
    assert v.index_path.exists()
    again, damage = reopen(tmp_path, executor)
    assert not damage and again.stats.needles == 10


async def test_a_retired_copy_refuses_writes_and_checkpoints_but_serves_reads_until_detached(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"still here")
    await v.retire()
    with pytest.raises(VolumeReadOnly):
        await v.write(n(2, 0, 2), b"late")
    assert not await v.checkpoint() and not v.index_path.exists()  # the successor's files are its own
    assert (await v.read(n(1, 0, 1))).data == b"still here"
    fd = v._handle.fd
    v.detach()
    with pytest.raises(OSError):
        os.fstat(fd)
