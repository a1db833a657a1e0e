"""store/volume.py: the write, read, delete, restart and compaction paths on real files."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from store.errors import (
    ChecksumMismatch,
    NeedleNotFound,
    NeedleTooLarge,
    VolumeReadOnly,
)
from store.volume import VolumeLimits, create_volume, open_volume, volume_path
from trenchcoat import needle
from trenchcoat.lograte import OncePerInterval
from trenchcoat.needle_ref import NeedleRef

LIMITS = VolumeLimits(capacity_bytes=64 * 1024 * 1024, max_needle_bytes=1024 * 1024)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(4, thread_name_prefix="test-io") as pool:
        yield pool


def n(key: int, alt: int, cookie: int) -> NeedleRef:
    """A needle of volume 1 (the one these tests create), named like the old positional calls."""
    return NeedleRef(logical_volume=1, key=key, alternate_key=alt, cookie=cookie)


def reopen(directory: Path, executor, limits=LIMITS):
    volume, damage = open_volume(volume_path(directory, 1), limits, executor)
    return volume, damage


async def test_write_then_read_back_exactly(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offset, size = await v.write(n(0xABC, 0, 0xDEADBEEF), b"hello photo")
    assert offset == needle.SUPERBLOCK.size and size == needle.stored_size(11)
    assert (await v.read(n(0xABC, 0, 0xDEADBEEF))).data == b"hello photo"
    assert v.io.preads == 1


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.parametrize("nowait", [True, False], ids=["rwf-nowait", "thread-only"])
async def test_uncached_needles_are_read_once_in_a_thread(tmp_path, executor, monkeypatch, nowait):
    from store import volume as volume_module

    monkeypatch.setattr(volume_module._nowait, "supported", nowait and hasattr(os, "RWF_NOWAIT"))
    v = create_volume(tmp_path, 1, LIMITS, executor)
    blobs = {k: os.urandom(200_000 + k) for k in range(1, 9)}
    for k, blob in blobs.items():
        await v.write(n(k, 0, k), blob)
    drop_page_cache(v.path)
    assert (await v.read(n(1, 0, 1))).data == blobs[1]
    got = await v.read_many([n(k, 0, k) for k in range(2, 9)])
    assert [g.data for g in got] == [blobs[k] for k in range(2, 9)]
    assert v.io.preads == 8
    # Cached now: every read answered without a miss.
    misses = v.io.nowait_misses
    assert [g.data for g in await v.read_many([n(k, 0, k) for k in blobs])] == list(blobs.values())
    assert v.io.nowait_misses == misses and v.io.preads == 16


async def test_read_many_reports_each_failure_in_its_own_place(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offsets = {}
    for k in range(1, 6):
        offsets[k], _ = await v.write(n(k, 0, k), bytes([k]) * 100)
    await v.delete(n(4, 0, 4))
    with open(v.path, "r+b") as f:
        f.seek(offsets[5] + needle.HEADER.size + 3)
        f.write(b"\xff")
    got = await v.read_many([n(1, 0, 1), n(2, 0, 99), n(3, 0, 3), n(4, 0, 4), n(5, 0, 5), n(6, 0, 6)])
    assert got[0] == needle.Stored(bytes([1]) * 100, 0) and got[2] == needle.Stored(bytes([3]) * 100, 0)
    assert [type(r).__name__ for r in got[1:2] + got[3:]] == [
        "NeedleNotFound", "NeedleNotFound", "ChecksumMismatch", "NeedleNotFound"]


async def test_wrong_cookie_unknown_key_and_other_rendition_are_not_found(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 7), b"x")
    for key, alt, cookie in ((1, 0, 8), (2, 0, 7), (1, 1, 7)):
        with pytest.raises(NeedleNotFound) as info:
            await v.read(n(key, alt, cookie))
        assert "not found" in str(info.value)


async def test_a_flipped_data_byte_is_data_loss_never_wrong_bytes(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offset, _ = await v.write(n(5, 0, 9), b"A" * 100)
    with open(v.path, "r+b") as f:
        f.seek(offset + needle.HEADER.size + 50)
        f.write(b"B")
    with pytest.raises(ChecksumMismatch):
        await v.read(n(5, 0, 9))
    checked, damaged = await v.scrub()
    assert checked == 1 and [d.key for d in damaged] == [5]


async def test_concurrent_writers_share_fsyncs(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await asyncio.gather(*(v.write(n(i, 0, i), os.urandom(64)) for i in range(200)))
    assert v.io.synced_writes == 200
    assert v.io.fsyncs < 200  # group commit: some syncs covered several writes
    assert v.stats.needles == 200


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


async def test_delete_reads_as_not_found_and_survives_restart_without_checkpoint(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"keep")
    await v.write(n(2, 0, 2), b"gone")
    await v.close()  # checkpoint now covers both
    v, _ = reopen(tmp_path, executor)
    assert await v.delete(n(2, 0, 2)) is True
    assert await v.delete(n(2, 0, 2)) is False
    with pytest.raises(NeedleNotFound):
        await v.read(n(2, 0, 2))
    # Crash: no checkpoint after the delete. The flag in the needle still rules.
    v2, _ = reopen(tmp_path, executor)
    with pytest.raises(NeedleNotFound):
        await v2.read(n(2, 0, 2))
    assert (await v2.read(n(1, 0, 1))).data == b"keep"


async def test_delete_with_a_wrong_cookie_is_refused(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"mine")
    with pytest.raises(NeedleNotFound):
        await v.delete(n(1, 0, 2))
    assert (await v.read(n(1, 0, 1))).data == b"mine"


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


async def test_export_streams_the_file_from_an_offset(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(20):
        await v.write(n(i, 0, i), os.urandom(1000))
    chunks = [c async for c in v.export(64, 4096)]
    assert b"".join(d for _, d, _ in chunks) == v.path.read_bytes()[64:]
    assert chunks[0][0] == 64 and chunks[-1][2] == v.file_bytes


async def test_a_write_waiting_for_its_sync_while_compaction_swaps_files_reads_back(tmp_path, executor, monkeypatch):
    """The write appended to the old file, then compaction copied it (tail catch-up) into
    the new file at another offset and swapped; the write must not index its old offset
    into the new file's index."""
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(1, 20):
        await v.write(n(i, 0, i), bytes([i]) * 300)
    for i in range(1, 10):
        await v.delete(n(i, 0, i))  # so compaction moves the survivors to lower offsets
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
    assert (await v.read(n(99, 0, 99))).data == b"late" * 100
    assert v.index.get(99, 0).offset == offset
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
    for i in range(1, 20):
        await v.write(n(i, 0, i), bytes([i]) * 300)
    for i in range(1, 10):
        await v.delete(n(i, 0, i))
    appended, release = asyncio.Event(), asyncio.Event()
    durable = v._commit.wait_durable

    async def held_sync() -> None:
        appended.set()
        await release.wait()
        await durable()

    monkeypatch.setattr(v._commit, "wait_durable", held_sync)
    writing = asyncio.create_task(v.write(n(99, 0, 99), b"late" * 100))
    await appended.wait()
    monkeypatch.setattr(v._commit, "wait_durable", durable)
    await v.compact()
    release.set()
    await writing
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

    from store import volume as volume_module

    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(1, 20):
        await v.write(n(i, 0, i), bytes([i]) * 300)
    for i in range(1, 10):
        await v.delete(n(i, 0, i))
    finishing, go_on = threading.Event(), threading.Event()
    finish = volume_module._finish_compaction

    def held_finish(*args):
        finishing.set()
        go_on.wait(10)  # the injected delay: phase 2 holds the append lock a while
        return finish(*args)

    monkeypatch.setattr(volume_module, "_finish_compaction", held_finish)
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


async def test_a_damaged_needle_is_logged_once_per_interval_however_often_it_is_read(tmp_path, executor, caplog):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    now = [1000.0]
    v.damage_log = OncePerInterval(60.0, clock=lambda: now[0])
    offsets = {}
    for k in (5, 6, 7):
        offsets[k], _ = await v.write(n(k, 0, k), bytes([k]) * 100)
    with open(v.path, "r+b") as f:
        for k in (5, 6):
            f.seek(offsets[k] + needle.HEADER.size + 50)
            f.write(b"\xff")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "answered DATA_LOSS" in r.getMessage()]

    caplog.set_level(logging.ERROR, logger="store.volume")
    for _ in range(50):  # a hot damaged photo: every read answers DATA_LOSS
        with pytest.raises(ChecksumMismatch):
            await v.read(n(5, 0, 5))
    assert isinstance((await v.read_many([n(5, 0, 5)]))[0], ChecksumMismatch)
    assert (await v.read(n(7, 0, 7))).data == bytes([7]) * 100  # an intact one says nothing
    [line] = lines()
    assert line.startswith(f"volume 1: needle 0x5/0 at offset {offsets[5]} failed verification (")
    assert "checksum" in line

    with pytest.raises(ChecksumMismatch):  # another damaged needle gets its own line
        await v.read(n(6, 0, 6))
    assert len(lines()) == 2 and f"needle 0x6/0 at offset {offsets[6]}" in lines()[1]

    now[0] += 59.0
    with pytest.raises(ChecksumMismatch):
        await v.read(n(5, 0, 5))
    assert len(lines()) == 2
    now[0] += 1.0  # the interval has passed: said again, with what was held back
    with pytest.raises(ChecksumMismatch):
        await v.read(n(5, 0, 5))
    assert len(lines()) == 3 and "needle 0x5/0" in lines()[2] and "51 more times" in lines()[2]
