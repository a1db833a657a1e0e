"""store/volume_read.py: a read is one pread, from the page cache on the loop or else in a
thread, and is verified: a wrong cookie or key is not found, damaged bytes are DATA_LOSS."""

from __future__ import annotations

import logging
import os

import pytest

from store.errors import ChecksumMismatch, NeedleNotFound
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, drop_page_cache, n
from trenchcoat import needle
from trenchcoat.errors import TrenchcoatError
from trenchcoat.lograte import OncePerInterval


def data_of(results: list[needle.Stored | TrenchcoatError]) -> list[bytes]:
    """The bytes of each of ``read_many``'s results, every one a read that succeeded."""
    out = []
    for result in results:
        assert isinstance(result, needle.Stored), result
        out.append(result.data)
    return out


@pytest.mark.parametrize("nowait", [True, False], ids=["rwf-nowait", "thread-only"])
async def test_uncached_needles_are_read_once_in_a_thread(tmp_path, executor, monkeypatch, nowait):
    from store import volume_read

    monkeypatch.setattr(volume_read._nowait, "supported", nowait and hasattr(os, "RWF_NOWAIT"))
    v = create_volume(tmp_path, 1, LIMITS, executor)
    blobs = {k: os.urandom(200_000 + k) for k in range(1, 9)}
    for k, blob in blobs.items():
        await v.write(n(k, 0, k), blob)
    drop_page_cache(v.path)
    assert (await v.read(n(1, 0, 1))).data == blobs[1]
    got = await v.read_many([n(k, 0, k) for k in range(2, 9)])
    assert data_of(got) == [blobs[k] for k in range(2, 9)]
    assert v.io.preads == 8
    # Cached now: every read answered without a miss.
    misses = v.io.nowait_misses
    assert data_of(await v.read_many([n(k, 0, k) for k in blobs])) == list(blobs.values())
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

    caplog.set_level(logging.ERROR, logger="store.volume_base")
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
