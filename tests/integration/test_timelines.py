"""feedsvc/timelines.py against a real Redis: pages by ``media_id < cursor`` never skip,
repeat or reorder entries, with thousands of ids in one millisecond and ids so close that
a sorted set's double scores could not tell them apart; trimming records its floor."""

from __future__ import annotations

import random

import pytest

from feedsvc.home import merge, settled
from feedsvc.model import Entry
from feedsvc.timelines import Timelines, timeline_key, timeline_meta
from trenchcoat import ids, redisio

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_cluster):
    """The timelines on a Redis Cluster (each user's keys in one slot, users over three primaries)."""
    client = redisio.connect(redis_cluster.endpoint, timeout_s=30.0, cluster=True)
    await client.flushall()
    yield client
    await client.aclose()


def same_millisecond_ids(n: int) -> list[int]:
    """``n`` distinct ids minted in one millisecond (every shard's sequence)."""
    ms = 123_456_789
    return [ids.make_id(ms, shard, seq) for shard in range(8192) for seq in range(1024)][:n]


async def scroll(t: Timelines, user: int, rng: random.Random) -> list[Entry]:
    """Every page of one timeline, of random sizes, the way the home feed reads it."""
    out: list[Entry] = []
    cursor = 0
    sources = [(timeline_key(user), timeline_meta(user))]
    while True:
        want = rng.randint(1, 40)
        [window] = await t.windows(sources, cursor, want)
        page = [e for e in merge([window.entries]) if e.media_id >= settled([window], want)]
        if not page:
            return out
        out += page
        cursor = page[-1].media_id


async def test_pages_are_exact_with_thousands_of_ids_in_one_millisecond(redis):
    rng = random.Random(5)
    minted = same_millisecond_ids(3000)
    # Ids 512 apart and closer: as doubles many are equal, so score-ordered pages would break.
    near = [(1 << 62) + k * 300 for k in range(200)]
    assert len({float(i) for i in near}) < len(near)
    entries = [Entry(i, rng.randrange(1 << 40)) for i in minted + near]
    t = Timelines(redis, timeline_max=10_000, celebrity_recent=10)
    for start in range(0, len(entries), 500):
        for e in entries[start:start + 500]:
            await t.push([1], e)
    for _ in range(5):
        assert await scroll(t, 1, rng) == sorted(entries, reverse=True)


async def test_a_cursor_excludes_exactly_its_own_id_and_everything_above(redis):
    t = Timelines(redis, timeline_max=100, celebrity_recent=10)
    entries = [Entry(i, 7) for i in same_millisecond_ids(50)]
    for e in entries:
        await t.push([2], e)
    newest_first = sorted(entries, reverse=True)
    for k, cursor in enumerate(newest_first):
        [window] = await t.windows([(timeline_key(2), timeline_meta(2))], cursor.media_id, 1000)
        assert window.entries == newest_first[k + 1:]


async def test_trimming_records_the_floor_even_after_later_removals(redis):
    t = Timelines(redis, timeline_max=5, celebrity_recent=10)
    entries = [Entry(i, 1 + i % 2) for i in range(100, 110)]
    for e in entries:
        await t.push([3], e)
    [window] = await t.windows([(timeline_key(3), timeline_meta(3))], 0, 10)
    assert [e.media_id for e in window.entries] == [109, 108, 107, 106, 105] and window.floor == 105
    await t.drop_author(3, 2)  # an unfollow takes the timeline under its cap
    [window] = await t.windows([(timeline_key(3), timeline_meta(3))], 0, 10)
    assert [e.media_id for e in window.entries] == [108, 106] and window.floor == 105
