"""store/volumes.py: restoring a volume from a peer's export stream, every way it can
fail (the old copy keeps serving, nothing is left behind), and the swap itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from store.errors import ChecksumMismatch, CorruptVolume, NeedleNotFound, VolumeRetired
from store.volume import Volume, VolumeLimits
from store.volumes import Checkpointer, VolumeSet
from trenchcoat import needle
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import ExportChunk, Finding

LIMITS = VolumeLimits(capacity_bytes=16 * 1024 * 1024, max_needle_bytes=1024 * 1024)
CHUNK = 4096


def ref(volume_id: int, key: int) -> NeedleRef:
    return NeedleRef(logical_volume=volume_id, key=key, cookie=key + 7)


@pytest.fixture
async def machines(tmp_path: Path):
    """Two stores' volume sets: ``source`` holds volumes 1 and 2 with needles; ``target``
    holds an older copy of volume 1 (fewer needles)."""
    source, target = VolumeSet(tmp_path / "a", LIMITS, 4), VolumeSet(tmp_path / "b", LIMITS, 4)
    await source.load()
    await target.load()
    for volume_id in (1, 2):
        volume = await source.create(volume_id)
        for key in range(1, 30):
            await volume.write(ref(volume_id, key), os.urandom(1000 + key))
    old = await target.create(1)
    for key in range(1, 10):
        await old.write(ref(1, key), (await source.get(1).read(ref(1, key))).data)
    yield source, target
    await source.close()
    await target.close()


async def chunks_of(volume: Volume) -> list[ExportChunk]:
    return [ExportChunk(offset, data, needle.crc32c(data), end) async for offset, data, end in volume.export(0, CHUNK)]


async def stream(chunks: list[ExportChunk]) -> AsyncIterator[ExportChunk]:
    for chunk in chunks:
        yield chunk


async def assert_old_copy_serves_and_nothing_is_left(target: VolumeSet, source: VolumeSet) -> None:
    old = target.get(1)
    assert old.stats.needles == 9
    assert (await old.read(ref(1, 5))).data == (await source.get(1).read(ref(1, 5))).data
    assert sorted(p.name for p in target.directory.iterdir() if ".repair" in p.name) == []


async def test_a_good_copy_is_swapped_in_and_serves(machines):
    source, target = machines
    old = target.get(1)
    volume, copied = await target.restore(1, stream(await chunks_of(source.get(1))))
    assert copied == source.get(1).file_bytes and target.get(1) is volume and volume is not old
    for key in range(1, 30):
        assert (await volume.read(ref(1, key))).data == (await source.get(1).read(ref(1, key))).data
    assert volume.path == target.directory / "vol-1.dat"


async def test_a_repair_never_brings_back_a_needle_deleted_in_the_copy_it_replaces(machines):
    """The source was down when needles 3 and 5 were deleted here: its copy still holds
    them live, and the repair must not resurrect them."""
    source, target = machines
    old = target.get(1)
    assert await old.delete(ref(1, 3))
    # Needle 5: flagged on disk after the last checkpoint, then a crash; the index still
    # says live (reads would learn it), as after a restart.
    entry = old.index.get(5, 0)
    assert entry is not None
    with open(old.path, "r+b") as f:
        f.seek(entry.offset + needle.FLAGS_OFFSET)
        f.write(bytes([needle.FLAG_DELETED]))
    assert not old.index.get(5, 0).deleted
    volume, _ = await target.restore(1, stream(await chunks_of(source.get(1))))
    for key in (3, 5):
        with pytest.raises(NeedleNotFound):
            await volume.read(ref(1, key))
        assert (await source.get(1).read(ref(1, key))).data  # the source still has it
    for key in (1, 2, 4, *range(6, 30)):
        assert (await volume.read(ref(1, key))).data == (await source.get(1).read(ref(1, key))).data
    assert volume.stats.needles == 27


async def test_a_delete_on_a_copy_being_replaced_is_refused_for_a_retry(machines):
    _, target = machines
    old = target.get(1)
    await old.retire()
    with pytest.raises(VolumeRetired, match="retry"):
        await old.delete(ref(1, 2))


async def test_reads_under_way_on_the_old_copy_finish_there(machines):
    source, target = machines
    old = target.get(1)
    fd = old._handle.acquire()  # a read in flight on the old copy
    await target.restore(1, stream(await chunks_of(source.get(1))))
    assert os.pread(fd, needle.SUPERBLOCK.size, 0)  # still open: the read can finish
    old._handle.release()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed once the last read let go


async def test_a_chunk_failing_its_crc_is_refused(machines):
    source, target = machines
    chunks = await chunks_of(source.get(1))
    bad = chunks[2]
    chunks[2] = ExportChunk(bad.offset, bad.data[:-1] + bytes([bad.data[-1] ^ 1]), bad.crc32c, bad.end)
    with pytest.raises(ChecksumMismatch, match="checksum in transit"):
        await target.restore(1, stream(chunks))
    await assert_old_copy_serves_and_nothing_is_left(target, source)


async def test_a_gap_between_chunks_is_refused(machines):
    source, target = machines
    chunks = await chunks_of(source.get(1))
    del chunks[1]
    with pytest.raises(CorruptVolume, match="expected"):
        await target.restore(1, stream(chunks))
    await assert_old_copy_serves_and_nothing_is_left(target, source)


async def test_a_stream_ending_early_is_refused(machines):
    source, target = machines
    chunks = await chunks_of(source.get(1))
    with pytest.raises(CorruptVolume, match="stream ended"):
        await target.restore(1, stream(chunks[:-1]))
    with pytest.raises(CorruptVolume, match="stream ended"):
        await target.restore(1, stream([]))
    await assert_old_copy_serves_and_nothing_is_left(target, source)


async def test_a_copy_of_another_volume_is_refused(machines):
    source, target = machines
    with pytest.raises(CorruptVolume, match="is volume 2"):
        await target.restore(1, stream(await chunks_of(source.get(2))))
    await assert_old_copy_serves_and_nothing_is_left(target, source)


async def test_a_copy_with_a_damaged_needle_is_refused(machines):
    source, target = machines
    # Rot one needle's data at the source: the chunk CRCs are computed over the rotten
    # bytes, so only the needle-by-needle verification can catch it.
    entry = source.get(1).index.get(12, 0)
    with open(source.get(1).path, "r+b") as f:
        f.seek(entry.offset + needle.HEADER.size + 10)
        byte = f.read(1)
        f.seek(entry.offset + needle.HEADER.size + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CorruptVolume, match="damaged needles"):
        await target.restore(1, stream(await chunks_of(source.get(1))))
    await assert_old_copy_serves_and_nothing_is_left(target, source)


async def test_a_new_replica_takes_a_copy_with_a_rotten_needle_and_reports_it_for_repair(machines):
    source, target = machines
    entry = source.get(2).index.get(5, 0)
    assert entry is not None
    with open(source.get(2).path, "r+b") as f:
        f.seek(entry.offset + needle.HEADER.size + 3)
        byte = f.read(1)
        f.seek(entry.offset + needle.HEADER.size + 3)
        f.write(bytes([byte[0] ^ 0xFF]))
    found: list[Finding] = []
    target.on_damage = found.append
    volume, _ = await target.restore(2, stream(await chunks_of(source.get(2))))  # the target held no copy
    assert target.get(2) is volume and volume.stats.needles == 29
    assert [(f.volume_id, f.key, f.offset, f.kind) for f in found] == [(2, 5, entry.offset, "damaged")]
    with pytest.raises(ChecksumMismatch):
        await volume.read(ref(2, 5))


async def test_a_volume_the_machine_lacks_is_created_by_the_copy(machines):
    source, target = machines
    volume, _ = await target.restore(2, stream(await chunks_of(source.get(2))))
    assert target.get(2) is volume and volume.stats.needles == 29


async def test_reads_during_the_swap_never_meet_a_closed_copy(machines, monkeypatch):
    """Opening (scanning) the new copy takes a while on a big volume; reads arriving then
    must be served by whichever copy is current, never by one already closed."""
    import threading

    from store import volumes as volumes_module

    source, target = machines
    opening, go_on = threading.Event(), threading.Event()
    real_open = volumes_module.open_volume

    def slow_open(*args, **kwargs):
        opening.set()
        go_on.wait(10)  # the injected delay: a long scan of the copy
        return real_open(*args, **kwargs)

    monkeypatch.setattr(volumes_module, "open_volume", slow_open)
    restoring = asyncio.create_task(target.restore(1, stream(await chunks_of(source.get(1)))))
    while not opening.is_set():
        await asyncio.sleep(0.01)
    expected = (await source.get(1).read(ref(1, 3))).data
    for _ in range(20):
        assert (await target.get(1).read(ref(1, 3))).data == expected
    go_on.set()
    await restoring
    assert (await target.get(1).read(ref(1, 3))).data == expected


async def test_a_source_that_cannot_export_the_volume_is_failed_precondition():
    from store.errors import SourceCannotExport
    from store.peer import Peers
    from trenchcoat.clients.store import StoreClient
    from trenchcoat.errors import VolumeNotFound

    class Source:
        async def export(self, address, volume_id, *, chunk_bytes=0, offset=0, timeout_s=None,
                         chunk_timeout_s=None):
            raise VolumeNotFound(f"store {address}: volume {volume_id} is not on this store")
            yield  # an async generator, like StoreClient.export

    with pytest.raises(SourceCannotExport) as info:
        async for _ in Peers(cast(StoreClient, Source()), chunk_timeout_s=5.0).export("s9", 4, 0):
            pass
    assert info.value.status == "FAILED_PRECONDITION" and "s9" in str(info.value)


async def test_the_checkpointer_shutdown_returns_only_after_the_tick_under_way_has_ended(tmp_path, monkeypatch):
    """A draining store closes its volumes right after the checkpointer's shutdown: a tick
    still checkpointing then would write beside the final checkpoints, into files being
    closed. The tick is held mid-way; shutdown must wait for it, not merely ask it to stop."""
    volumes = VolumeSet(tmp_path, LIMITS, 2)
    await volumes.load()
    in_tick, go_on = asyncio.Event(), asyncio.Event()
    events: list[str] = []

    async def held_checkpoint_all() -> int:
        in_tick.set()
        await go_on.wait()  # the injected delay: a checkpoint still being written
        events.append("tick ended")
        return 0

    monkeypatch.setattr(volumes, "checkpoint_all", held_checkpoint_all)
    checkpointer = Checkpointer(volumes, interval_s=0.001)
    running = asyncio.create_task(checkpointer.run())
    await in_tick.wait()
    stopping = asyncio.create_task(checkpointer.shutdown())
    await asyncio.sleep(0)  # shutdown runs up to its first wait
    assert not stopping.done(), "shutdown returned while a tick was still under way"
    go_on.set()
    await stopping
    events.append("shutdown returned")
    assert events == ["tick ended", "shutdown returned"] and running.done()
    await running
    await volumes.close()
