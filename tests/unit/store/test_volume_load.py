"""store/volume_load.py: opening a volume at startup: the checkpoint, then the tail scan; a torn
tail truncated, damage in the middle kept apart, a bad checkpoint or a compaction's leftover
ignored."""

from __future__ import annotations

import os

import pytest

from store.errors import NeedleNotFound
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen
from trenchcoat import needle


async def test_torn_tail_is_truncated_on_restart(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(10):
        await v.write(n(i, 0, i), bytes([i]) * 500)
    good_end = v.file_bytes
    torn = needle.pack(needle.Needle(77, 0, 77), b"z" * 500)[:300]  # crash mid-append
    with open(v.path, "ab") as f:
        f.write(torn)
    v2, damage = reopen(tmp_path, executor)
    assert v2.file_bytes == good_end == os.path.getsize(v2.path)
    assert damage == []
    with pytest.raises(NeedleNotFound):
        await v2.read(n(77, 0, 77))
    for i in range(10):
        assert (await v2.read(n(i, 0, i))).data == bytes([i]) * 500


async def test_damage_in_the_middle_is_not_mistaken_for_a_torn_tail(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offsets = [(await v.write(n(i, 0, i), bytes([i]) * 200))[0] for i in range(5)]
    with open(v.path, "r+b") as f:  # smash needle 2's header magic
        f.seek(offsets[2])
        f.write(b"\0\0\0\0")
    v2, damage = reopen(tmp_path, executor)  # no checkpoint: a full scan
    assert len(damage) == 1 and damage[0].offset == offsets[2]
    for i in (0, 1, 3, 4):
        assert (await v2.read(n(i, 0, i))).data == bytes([i]) * 200


async def test_restart_loads_checkpoint_and_scans_only_the_tail(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(50):
        await v.write(n(i, 0, i), b"a" * 10)
    assert await v.checkpoint()
    for i in range(50, 60):
        await v.write(n(i, 0, i), b"b" * 10)
    v2, _ = reopen(tmp_path, executor)  # crash: checkpoint covers 50, tail has 10
    assert v2.stats.needles == 60
    assert (await v2.read(n(55, 0, 55))).data == b"b" * 10
    assert (await v2.read(n(5, 0, 5))).data == b"a" * 10


async def test_a_corrupt_checkpoint_is_ignored(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(20):
        await v.write(n(i, 0, i), b"c")
    await v.close()
    idx = v.index_path
    raw = bytearray(idx.read_bytes())
    raw[-1] ^= 0xFF
    idx.write_bytes(raw)
    v2, _ = reopen(tmp_path, executor)
    assert v2.stats.needles == 20 and (await v2.read(n(19, 0, 19))).data == b"c"


async def test_an_interrupted_compaction_leaves_the_old_volume_whole(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(10):
        await v.write(n(i, 0, i), b"d" * 50)
    await v.close()
    # A crash mid-compaction leaves a partial new file beside the volume.
    v.path.with_suffix(".dat.compact").write_bytes(b"partial garbage")
    v2, _ = reopen(tmp_path, executor)
    assert not v.path.with_suffix(".dat.compact").exists()
    assert all([(await v2.read(n(i, 0, i))).data == b"d" * 50 for i in range(10)])
