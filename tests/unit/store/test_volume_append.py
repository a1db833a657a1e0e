"""store/volume_append.py: a write is durable and indexed before it is acknowledged; one that
does not fit, or fails at the disk, turns the volume read-only."""

from __future__ import annotations

import os

import pytest

from store.errors import DiskFailure, NeedleTooLarge, VolumeReadOnly
from store.volume import VolumeLimits
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen
from trenchcoat import needle


async def test_write_then_read_back_exactly(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offset, size = await v.write(n(0xABC, 0, 0xDEADBEEF), b"hello photo")
    assert offset == needle.SUPERBLOCK.size and size == needle.stored_size(11)
    assert (await v.read(n(0xABC, 0, 0xDEADBEEF))).data == b"hello photo"
    assert v.io.preads == 1


async def test_full_volume_turns_read_only_and_refuses_writes(tmp_path, executor):
    limits = VolumeLimits(capacity_bytes=needle.SUPERBLOCK.size + 3 * needle.stored_size(1000), max_needle_bytes=5000)
    v = create_volume(tmp_path, 1, limits, executor)
    for i in range(3):
        await v.write(n(i, 0, 1), b"x" * 1000)
    with pytest.raises(VolumeReadOnly, match="full"):
        await v.write(n(99, 0, 1), b"x" * 1000)
    assert v.read_only
    with pytest.raises(VolumeReadOnly):
        await v.write(n(100, 0, 1), b"y")
    assert (await v.read(n(2, 0, 1))).data == b"x" * 1000  # still readable
    await v.close()
    again, _ = reopen(tmp_path, executor, limits)
    assert again.read_only  # persisted in the superblock


async def test_oversize_needle_is_invalid_argument(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    with pytest.raises(NeedleTooLarge):
        await v.write(n(1, 0, 1), b"x" * (LIMITS.max_needle_bytes + 1))


async def test_a_failed_append_truncates_back_to_the_old_end_and_raises(tmp_path, executor, monkeypatch):
    from store import volume_append

    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"before")
    end = v.file_bytes
    real_pwrite = volume_append.pwrite_all

    def half_then_fail(fd, data, offset):
        real_pwrite(fd, data[: len(data) // 2], offset)  # the injected fault: the disk fails mid-needle
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(volume_append, "pwrite_all", half_then_fail)
    with pytest.raises(DiskFailure, match="write failed"):
        await v.write(n(2, 0, 2), b"x" * 5000)
    assert os.path.getsize(v.path) == end == v.file_bytes  # nothing of it is left behind
    assert v.read_only and v.index.get(2, 0) is None
    monkeypatch.setattr(volume_append, "pwrite_all", real_pwrite)
    with pytest.raises(VolumeReadOnly):
        await v.write(n(3, 0, 3), b"y")
    assert (await v.read(n(1, 0, 1))).data == b"before"
