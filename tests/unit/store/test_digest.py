"""store/digest.py and its upkeep: a volume's content digest names its live needles
whatever order they came in and wherever they sit, changes when one needle differs, and
stays exact through deletes, overwrites, compaction, restarts and crashes (recounted)."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from store.digest import BUCKETS, ContentDigest, needle_hash
from store.volume import Volume
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n, reopen
from trenchcoat import needle


def expected(live: dict[tuple[int, int], tuple[int, bytes]]) -> ContentDigest:
    """The digest of these live needles ((key, alt) -> (cookie, data)), counted from scratch."""
    digest = ContentDigest()
    for (key, alt), (cookie, data) in live.items():
        digest.add(key, alt, needle_hash(key, alt, cookie, 0, needle.crc32c(data)))
    return digest


async def fill(v: Volume, items: list[tuple[int, int, int, bytes]]) -> None:
    for key, alt, cookie, data in items:
        await v.write(n(key, alt, cookie), data)


def needles(count: int, seed: int = 1) -> list[tuple[int, int, int, bytes]]:
    rng = random.Random(seed)
    return [(k, alt, rng.getrandbits(32), rng.randbytes(rng.randint(1, 300))) for k in range(1, count + 1)
            for alt in (0, 2)]


async def test_two_copies_of_the_same_needles_in_another_order_agree_and_one_byte_of_difference_shows(
        tmp_path, executor):
    items = needles(60)
    for name in "abc":
        (tmp_path / name).mkdir()
    a, b, c = (create_volume(tmp_path / name, 1, LIMITS, executor) for name in "abc")
    await fill(a, items)
    await fill(b, list(reversed(items)))
    key, alt, cookie, data = items[7]
    await fill(c, [*items[:7], (key, alt, cookie, data[:-1] + bytes([data[-1] ^ 1])), *items[8:]])
    assert a.digest == b.digest == expected({(k, al): (co, d) for k, al, co, d in items})
    assert a.digest.value() == b.digest.value()
    assert a.digest.value() != c.digest.value()
    assert len(a.digest.differing_buckets(c.digest.sums)) == 1
    assert c.digest.to_bytes() != a.digest.to_bytes() and len(a.digest.to_bytes()) == BUCKETS * 8


async def test_a_deleted_needle_counts_as_one_never_written_and_an_overwrite_as_its_last_version(
        tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    items = needles(20)
    await fill(v, items)
    live = {(k, al): (co, d) for k, al, co, d in items}
    for key, alt, cookie, _ in items[::3]:
        await v.delete(n(key, alt, cookie))
        del live[key, alt]
    key, alt, cookie, _ = items[1]
    await v.write(n(key, alt, cookie), b"second version")  # a retried upload with other bytes
    live[key, alt] = (cookie, b"second version")
    assert v.digest == expected(live)
    await v.keep_deleted([(items[4][0], items[4][1])])
    del live[items[4][0], items[4][1]]
    assert v.digest == expected(live)


async def test_compaction_and_a_clean_restart_keep_the_digest_exact(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    items = needles(40)
    await fill(v, items)
    live = {(k, al): (co, d) for k, al, co, d in items}
    for key, alt, cookie, _ in items[::2]:
        await v.delete(n(key, alt, cookie))
        del live[key, alt]
    await v.compact()
    assert v.digest == expected(live) and v.digest_settled
    await v.close()
    again, _ = reopen(tmp_path, executor)
    assert again.digest == expected(live) and again.digest_settled
    # The checkpoint is no longer marked clean once opened: a crash from here on is not a clean stop.
    crashed, _ = reopen(tmp_path, executor)
    assert not crashed.digest_settled
    again.detach()
    crashed.detach()


async def test_after_a_crash_the_recount_finds_deletes_the_checkpoint_missed_while_writes_go_on(
        tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    items = needles(300)
    await fill(v, items)
    live = {(k, al): (co, d) for k, al, co, d in items}
    await v.checkpoint()
    for key, alt, cookie, _ in items[:50]:  # deleted after the checkpoint, then a crash (no close)
        await v.delete(n(key, alt, cookie))
        del live[key, alt]
    crashed, _ = reopen(tmp_path, executor)
    v.detach()
    assert not crashed.digest_settled
    assert crashed.digest != expected(live)  # it still counts the 50 as live

    # Writes, deletes and an overwrite land while the recount reads (batches of 16, one at a time).
    async def meanwhile() -> None:
        for i, (key, alt, cookie, _) in enumerate(items[50:90]):
            if i % 2:
                await crashed.delete(n(key, alt, cookie))
                del live[key, alt]
            await asyncio.sleep(0)
        for key in range(10_000, 10_040):
            await crashed.write(n(key, 0, key), b"new %d" % key)
            live[key, 0] = (key, b"new %d" % key)
            await asyncio.sleep(0)
        key, alt, cookie, _ = items[200]
        await crashed.write(n(key, alt, cookie), b"overwritten")
        live[key, alt] = (cookie, b"overwritten")

    # The recount's reads wait until everything above has landed (deterministically during it).
    landed = threading.Event()

    class Gated(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            return super().submit(lambda: (landed.wait(30), fn(*args, **kwargs))[1])

    async def then_open() -> None:
        await meanwhile()
        landed.set()

    with Gated(1) as gated:
        fixed, _ = await asyncio.gather(crashed.recount(gated, batch=16), then_open())
    assert fixed == 50
    assert crashed.digest_settled
    assert crashed.digest == expected(live)
    assert crashed.stats.needles == len(live)
    crashed.detach()


async def test_the_audit_finds_rot_and_a_needle_mended_from_a_healthy_copy_is_byte_identical(tmp_path, executor):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = create_volume(tmp_path / "a", 1, LIMITS, executor)
    b = create_volume(tmp_path / "b", 1, LIMITS, executor)
    items = needles(30)
    await fill(a, items)
    await fill(b, items)
    key, alt, cookie, data = items[11]
    entry = a.index.get(key, alt)
    assert entry is not None
    offset, size = entry.offset, entry.size
    with open(a.path, "r+b") as f:
        f.seek(offset + needle.HEADER.size + len(data) // 2)
        f.write(bytes([data[len(data) // 2] ^ 0x10]))
    cursor = a.audit_snapshot()
    findings = []
    while not cursor.done:
        step = await a.audit_step(cursor, 1024, executor)
        findings += step.findings
    assert [(f.key, f.alternate_key, f.offset, f.kind) for f in findings] == [(key, alt, offset, "damaged")]
    raw = await b.copy_needle(key, alt)
    assert await a.replace_needle(raw)
    assert not await a.replace_needle(raw)  # healthy now: nothing to write
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        twin = b.index.get(key, alt)
        assert twin is not None
        fa.seek(offset)
        fb.seek(twin.offset)
        assert fa.read(size) == fb.read(size)
    assert (await a.read(n(key, alt, cookie))).data == data
    assert (await a.scrub())[1] == []
    assert a.digest == b.digest
