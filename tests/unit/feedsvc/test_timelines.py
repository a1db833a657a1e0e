"""feedsvc/timelines.py against a real Redis (a private one: deletion marks and the pull
epoch are global keys), and the feed's other pure pieces: a timeline's cap and floor,
exact id order where scores could not hold it, page edges, the caches' versions, deletion
marks, and the fan-out job's fields."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from feedsvc import timelines
from feedsvc.errors import BadFeedRequest, FollowSelf
from feedsvc.fanout import REMOVE, SPREAD, Job, job_for
from feedsvc.follows import check_pair
from feedsvc.home import _page
from feedsvc.model import Entry, Post, PostState
from feedsvc.timelines import Timelines

CAP = 5


@pytest.fixture
async def tl(private_redis) -> AsyncIterator[Timelines]:
    client = aioredis.Redis.from_url(private_redis.endpoint)
    yield Timelines(client, timeline_max=CAP, celebrity_recent=3)
    await client.aclose()


def user() -> int:
    return random.getrandbits(30)


async def window(tl: Timelines, user_id: int, cursor: int = 0, n: int = 100) -> timelines.Window:
    [w] = await tl.windows([(timelines.timeline_key(user_id), timelines.timeline_meta(user_id))], cursor, n)
    return w


async def test_a_timeline_keeps_its_newest_entries_and_raises_its_floor_to_what_it_kept(tl):
    u = user()
    posts = [Entry(1000 + i, 7) for i in range(8)]
    for e in random.sample(posts, len(posts)):
        assert await tl.push([u], e) == 1
    w = await window(tl, u)
    assert w.entries == sorted(posts, key=lambda e: e.media_id, reverse=True)[:CAP]  # newest first
    assert w.floor == 1003  # entries from here up are all there; below it some were trimmed
    await tl.remove([u], posts[7])  # under the cap again: the floor stays where the trim put it
    assert (await window(tl, u)).floor == 1003


async def test_ids_closer_than_a_double_can_tell_apart_keep_their_order_and_pages_neither_skip_nor_repeat(tl):
    """ids ~2^62 apart by 1: as scores they would be equal; as members they order exactly."""
    u, base = user(), (1 << 62) + 12345
    posts = [Entry(base + i, 3) for i in range(CAP)]
    for e in posts:
        await tl.push([u], e)
    assert float(posts[0].media_id) == float(posts[1].media_id)  # what a score could not tell apart
    seen, cursor = [], 0
    while True:
        w = await window(tl, u, cursor, 2)
        if not w.entries:
            break
        seen += w.entries
        cursor = w.entries[-1].media_id
    assert seen == posts[::-1]


async def test_a_floor_is_only_ever_raised(tl):
    u = user()
    await tl.backfill(u, [Entry(500, 2)], floor=400)
    await tl.backfill(u, [Entry(300, 4)], floor=100)  # a lower floor later: the higher one holds
    w = await window(tl, u)
    assert w.floor == 400 and [e.media_id for e in w.entries] == [500, 300]
    await tl.backfill(u, [], floor=None)  # nothing to do
    assert (await window(tl, u)).floor == 400


async def test_removing_an_authors_entries_and_dropping_deleted_ones(tl):
    u = user()
    mine, theirs = [Entry(10 + i, 1) for i in range(2)], [Entry(20 + i, 2) for i in range(2)]
    for e in mine + theirs:
        await tl.push([u], e)
    assert await tl.drop_author(u, 2) == 2
    assert (await window(tl, u)).entries == mine[::-1]
    await tl.drop(u, [mine[0]])
    assert (await window(tl, u)).entries == [mine[1]]


async def test_a_celebrity_list_is_capped_at_its_recent_posts(tl):
    author = user()
    for i in range(5):
        await tl.pull_add(Entry(100 + i, author))
    [w] = await tl.windows([(timelines.pull_key(author), timelines.pull_meta(author))], 0, 10)
    assert [e.media_id for e in w.entries] == [104, 103, 102] and w.floor == 102
    await tl.pull_remove(Entry(104, author))
    [w] = await tl.windows([(timelines.pull_key(author), timelines.pull_meta(author))], 0, 10)
    assert [e.media_id for e in w.entries] == [103, 102]


async def test_cached_follow_and_pull_sets_count_only_at_the_version_they_were_made_at(tl):
    u = user()
    version, epoch, built = await tl.read_state(u)
    assert (version, epoch, built) == (0, 0, False)
    await tl.cache_follows(u, version, [3, 4])
    await tl.cache_pull_set(u, epoch, version, [4])
    assert await tl.cached_sets(u, version, epoch) == ({3, 4}, [4])
    await tl.bump_follow_version(u)  # a follow committed
    version2, _, _ = await tl.read_state(u)
    assert version2 != version
    assert await tl.cached_sets(u, version2, epoch) == (None, None)
    await tl.cache_follows(u, version2, [])  # follows nobody: still a cached answer
    await tl.bump_pull_epoch()  # some author's first pull post appeared
    _, epoch2, _ = await tl.read_state(u)
    assert await tl.cached_sets(u, version2, epoch2) == (set(), None)


async def test_deletion_marks(tl):
    gone, kept = Entry(1 << 40, 1), Entry((1 << 40) + 1, 1)
    assert await tl.deleted_among([gone, kept]) == set()
    await tl.mark_deleted(gone.media_id)
    assert await tl.deleted_among([gone, kept]) == {gone.media_id}
    assert await tl.prune_deleted(older_than_s=3600) == 0  # a mark lives a while
    assert await tl.prune_deleted(older_than_s=-60) == 1
    assert await tl.deleted_among([gone]) == set()


async def test_a_rebuilt_timeline_is_marked_built_and_keeps_what_fan_out_wrote_meanwhile(tl):
    u = user()
    await tl.push([u], Entry(900, 5))  # fan-out, while the rebuild read PostgreSQL
    await tl.rebuild(u, [Entry(100 + i, 6) for i in range(CAP)], complete=False)
    _, _, built = await tl.read_state(u)
    w = await window(tl, u)
    assert built and w.entries[0] == Entry(900, 5) and len(w.entries) == CAP
    assert w.floor == 101  # the rebuild's own oldest (100) was trimmed: nothing below 101 is known whole


# --- pure pieces ----------------------------------------------------------------------------


def test_members_and_bounds_are_fixed_width_hex():
    e = Entry(0xABC, 0x12)
    assert timelines.member(e) == b"0000000000000abc0000000000000012"
    assert timelines.entry_of(timelines.member(e)) == e
    assert timelines.below(0) == "+" and timelines.below(0xABC) == "(0000000000000abc"
    assert timelines.timeline_key(5) == "tl:{u5}" and timelines.timeline_meta(5).startswith("tl:{u5}")


def test_a_cached_pull_set_is_read_only_at_its_epoch_and_version():
    assert timelines._pull_set(b"3:9:4,5", 3, 9) == [4, 5]
    assert timelines._pull_set(b"3:9:", 3, 9) == []
    assert timelines._pull_set(b"3:9:4", 4, 9) is None and timelines._pull_set(b"3:9:4", 3, 8) is None
    assert timelines._pull_set(None, 3, 9) is None


def test_a_page_has_a_cursor_only_when_more_follow():
    entries = [Entry(10 - i, 1) for i in range(4)]
    assert _page(entries, 3).entries == entries[:3] and _page(entries, 3).next_cursor == 8
    assert _page(entries, 4).next_cursor == 0
    assert _page([], 3).next_cursor == 0


def test_fan_out_jobs_round_trip_their_fields_and_refuse_malformed_entries():
    job = Job(1 << 62, SPREAD)
    assert Job.from_fields({k.encode(): v.encode() for k, v in job.fields().items()}) == job
    for fields in ({b"kind": b"spread"}, {b"media_id": b"x", b"kind": b"spread"}, {b"media_id": b"1", b"kind": b"\xff"}):
        with pytest.raises(ValueError, match="not a fan-out job"):
            Job.from_fields(fields)
    live = Post(media_id=5, author_id=1, caption="", created_at=0.0, state=PostState.LIVE, pushed=True)
    assert job_for(live) == Job(5, SPREAD)
    assert job_for(Post(media_id=5, author_id=1, caption="", created_at=0.0, state=PostState.DELETED,
                        pushed=True)) == Job(5, REMOVE)


def test_follow_pairs():
    check_pair(1, 2)
    with pytest.raises(FollowSelf, match="cannot follow themselves"):
        check_pair(3, 3)
    with pytest.raises(BadFeedRequest, match="non-negative"):
        check_pair(-1, 2)
