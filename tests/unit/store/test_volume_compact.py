"""store/volume_compact.py: compaction reclaims dead bytes while reads, writes and deletes go on,
including those caught across the swap of files."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from store.errors import NeedleNotFound
from store.volume import Volume
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen


async def test_compaction_reclaims_deleted_bytes_while_reads_and_writes_go_on(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    data = {i: os.urandom(random.randint(1, 4000)) for i in range(300)}
    for i, blob in data.items():
        await v.write(n(i, 0, i), blob)
    for i in range(0, 300, 2):
        await v.delete(n(i, 0, i))
    before = v.file_bytes

    async def traffic():
        for j in range(300, 340):
            data[j] = os.urandom(100)
            await v.write(n(j, 0, j), data[j])
            assert (await v.read(n(1, 0, 1))).data == data[1]

    (reclaimed, _live), _ = await asyncio.gather(v.compact(), traffic())
    assert reclaimed > 0 and v.file_bytes < before + 40 * 200
    live_keys = [k for k in data if k % 2 == 1 or k >= 300]
    for k in live_keys:
        assert (await v.read(n(k, 0, k))).data == data[k]
    with pytest.raises(NeedleNotFound):
        await v.read(n(0, 0, 0))
    v2, _ = reopen(tmp_path, executor)
    assert v2.stats.needles == len(live_keys)
    assert (await v2.read(n(339, 0, 339))).data == data[339]


async def write_across_a_compaction(v: Volume, monkeypatch: pytest.MonkeyPatch) -> int:
    """Needles 10..19 live (1..9 deleted, so compaction moves the survivors to lower
    offsets), then needle 99 appended and held before its sync while a compaction swaps
    files; returns the offset its write answered."""
    for i in range(1, 20):
        await v.write(n(i, 0, i), bytes([i]) * 300)
    for i in range(1, 10):
        await v.delete(n(i, 0, i))
    appended, release = asyncio.Event(), asyncio.Event()
    durable = v._commit.wait_durable

    async def held_sync() -> None:
        appended.set()
        await release.wait()  # the injected delay: the sync of this write finishes late
        await durable()

    monkeypatch.setattr(v._commit, "wait_durable", held_sync)
    writing = asyncio.create_task(v.write(n(99, 0, 99), b"late" * 100))
    await appended.wait()
    monkeypatch.setattr(v._commit, "wait_durable", durable)
    await v.compact()
    release.set()
    offset, _ = await writing
    return offset


async def test_a_write_waiting_for_its_sync_while_compaction_swaps_files_reads_back(tmp_path, executor, monkeypatch):
    """The write appended to the old file, then compaction copied it (tail catch-up) into
    the new file at another offset and swapped; the write must not index its old offset
    into the new file's index."""
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offset = await write_across_a_compaction(v, monkeypatch)
    assert (await v.read(n(99, 0, 99))).data == b"late" * 100
    entry = v.index.get(99, 0)
    assert entry is not None and entry.offset == offset
    for i in range(10, 20):
        assert (await v.read(n(i, 0, i))).data == bytes([i]) * 300
    await v.close()
    v2, damage = reopen(tmp_path, executor)
    assert not damage and (await v2.read(n(99, 0, 99))).data == b"late" * 100


async def test_a_checkpoint_after_such_a_swap_covers_only_synced_writes(tmp_path, executor, monkeypatch):
    """The write that waited across the swap must not leave its old-file offset behind as
    "pending": a checkpoint would then claim to cover up to it and a restart would scan
    from the middle of a needle."""
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await write_across_a_compaction(v, monkeypatch)
    for i in range(100, 160):  # the new file grows past the old offset
        await v.write(n(i, 0, i), bytes([i % 256]) * 500)
    await v.compact()  # a second compaction must not start its catch-up from a stale offset
    assert await v.checkpoint()
    v2, damage = reopen(tmp_path, executor)  # as after a crash: checkpoint, then the tail scan
    assert not damage
    for i in [*range(10, 20), 99, *range(100, 160)]:
        assert ((await v2.read(n(i, 0, i))).data)[:1] in (bytes([i]), b"l", bytes([i % 256]))


async def test_a_delete_waiting_while_compaction_swaps_files_flags_the_moved_needle(tmp_path, executor, monkeypatch):
    import threading

    from store import volume_compact

    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(1, 20):
        await v.write(n(i, 0, i), bytes([i]) * 300)
    for i in range(1, 10):
        await v.delete(n(i, 0, i))
    finishing, go_on = threading.Event(), threading.Event()
    finish = volume_compact._finish_compaction

    def held_finish(*args):
        finishing.set()
        go_on.wait(10)  # the injected delay: phase 2 holds the append lock a while
        return finish(*args)

    monkeypatch.setattr(volume_compact, "_finish_compaction", held_finish)
    compacting = asyncio.create_task(v.compact())
    while not finishing.is_set():
        await asyncio.sleep(0.01)
    deleting = asyncio.create_task(v.delete(n(15, 0, 15)))  # waits for the append lock
    await asyncio.sleep(0.05)
    go_on.set()
    await compacting
    assert await deleting is True
    with pytest.raises(NeedleNotFound):
        await v.read(n(15, 0, 15))
    for i in [*range(10, 15), *range(16, 20)]:
        assert (await v.read(n(i, 0, i))).data == bytes([i]) * 300
