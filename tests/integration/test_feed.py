"""The feed over real processes: PostgreSQL, Redis, a router and its stores, the feed and
two fan-out workers. Posts, follows, fan-out, the celebrity splice, exact pages, the
PostgreSQL continuation, hydration and bad input. The module's tests share one cluster,
each acting as users of its own (``users``); the two that restart the feed or empty Redis
have clusters of their own."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest

from tests import harness
from tests.cluster import Clients, eventually, feed_cluster, shared
from trenchcoat.clients.feed import FeedEntry
from trenchcoat.errors import InvalidArgument, NotFound, PermissionDenied

pytestmark = pytest.mark.integration


ENV = {"TRENCHCOAT_FEED__CELEBRITY_THRESHOLD": "3", "TRENCHCOAT_FEED__TIMELINE_MAX": "12",
       "TRENCHCOAT_FEED__CELEBRITY_RECENT": "10", "TRENCHCOAT_FEED__BACKFILL_POSTS": "5",
       # 1,000 readers at once on two busy cores: waiters get time to see the holder's answer
       "TRENCHCOAT_FEED__LEASE_WAIT_S": "10"}


@pytest.fixture(scope="module")
def cluster(module_service, etcd, postgres, redis_cluster, tmp_path_factory):
    """The module's feed, on a Redis Cluster of three primaries (as `trenchcoat up` runs it)."""
    return shared(feed_cluster(module_service, etcd, postgres, redis_cluster.endpoint, tmp_path_factory.mktemp("feed"),
                               directories=1, stores=3, env=ENV, redis_cluster=True))


@pytest.fixture
async def own_cluster(service, etcd, postgres, tmp_path):
    """For a test that restarts the feed or empties Redis: nobody else's (and a Redis of its own)."""
    from tests import harness

    redis = harness.start_redis()
    try:
        yield await feed_cluster(service, etcd, postgres, redis.endpoint, tmp_path, directories=1, stores=3, env=ENV)
    finally:
        redis.stop()


_BASES = itertools.count(1)


@pytest.fixture
def users() -> Callable[[int], int]:
    """Ids of this test's own users: ``users(1)``, ``users(2)``... never another test's."""
    base = next(_BASES) * 1000
    return lambda i: base + i


async def post(c: Clients, author: int, caption: str = "") -> FeedEntry:
    media = await c.media.upload(os.urandom(200), owner_id=author, content_type="image/jpeg")
    return await c.feed.post(author, media.media_id, caption or f"by {author}")


async def whole_feed(c: Clients, user: int, limit: int = 5) -> list[FeedEntry]:
    out, cursor = [], 0
    while True:
        page = await c.feed.home(user, cursor=cursor, limit=limit)
        out += page.entries
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


async def test_posts_reach_followers_and_the_author_newest_first(cluster, users):
    author, fan = users(1), users(2)
    async with cluster.clients() as c:
        assert await c.feed.follow(fan, author) and not await c.feed.follow(fan, author)
        posted = [await post(c, author) for _ in range(4)]
        want = sorted(posted, reverse=True)

        async def arrived():
            return await whole_feed(c, fan, limit=3) == want and await whole_feed(c, author, limit=3) == want

        await eventually(arrived, what="the posts in the follower's and the author's feeds")
        assert (await c.feed.user(author)).entries == want


async def test_bad_input_gets_precise_statuses(cluster, users):
    me, other = users(5), users(6)
    async with cluster.clients() as c:
        media = await c.media.upload(b"x" * 10, owner_id=me, content_type="image/png")
        with pytest.raises(InvalidArgument, match="2200 characters"):
            await c.feed.post(me, media.media_id, "x" * 2201)
        with pytest.raises(PermissionDenied, match=f"uploaded by user {me}"):
            await c.feed.post(other, media.media_id)
        with pytest.raises(NotFound, match="does not exist"):
            await c.feed.post(me, media.media_id + 1)
        with pytest.raises(InvalidArgument, match="non-negative"):
            await c.feed.follow(me, -1)
        with pytest.raises(InvalidArgument, match="cannot follow themselves"):
            await c.feed.follow(me, me)
        with pytest.raises(InvalidArgument, match="in the future"):
            await c.feed.home(me, cursor=(1 << 64) - 1)
        with pytest.raises(InvalidArgument, match="at most"):
            await c.feed.home(me, limit=100_000)
        with pytest.raises(InvalidArgument, match="at most 200 entries"):  # the proto and the server agree
            await c.feed.user(me, limit=201)
        with pytest.raises(InvalidArgument, match="NUL"):  # PostgreSQL's text cannot hold it: not INTERNAL
            await c.feed.post(me, media.media_id, "before\x00after")
        with pytest.raises(InvalidArgument, match="media_id is required"):
            await c.feed.post(me, 0)
        with pytest.raises(InvalidArgument, match="media_id is required"):  # as Post answers it
            await c.feed.delete_post(me, 0)
        entry = await c.feed.post(me, media.media_id, "hello")
        assert await c.feed.post(me, media.media_id, "again") == entry  # idempotent per media
        with pytest.raises(PermissionDenied):
            await c.feed.delete_post(other, media.media_id)
        assert await c.feed.delete_post(me, media.media_id) and not await c.feed.delete_post(me, media.media_id)


async def settled(cluster) -> bool:
    """Every post's fan-out duty (spreading, or removing a deleted one) has finished."""
    import asyncpg

    conn = await asyncpg.connect(cluster.postgres)
    try:
        return await conn.fetchval("SELECT count(*) FROM feed_posts WHERE fanned_out_at IS NULL") == 0
    finally:
        await conn.close()


class Model:
    """The plain truth a home feed is an index of: the live posts of whom I follow, and
    mine, newest first."""

    def __init__(self) -> None:
        self.follows: set[tuple[int, int]] = set()
        self.posts: dict[int, int] = {}  # media_id -> author, live posts only

    def feed(self, user: int) -> list[FeedEntry]:
        authors = {b for a, b in self.follows if a == user} | {user}
        return sorted((FeedEntry(m, a) for m, a in self.posts.items() if a in authors), reverse=True)


@pytest.mark.parametrize("seed", [7, 2026])
async def test_random_follows_posts_deletes_and_threshold_changes_match_a_plain_model(own_cluster, seed):
    """Random follows, unfollows, posts and deletes by eight users, the celebrity threshold
    changed twice (a feed process restarted with another), pages of random sizes: after
    fan-out settles, every page of every user's home feed matches the model exactly, no
    entry skipped, repeated or out of order, through timelines trimmed to 12 entries,
    celebrity lists of 10, backfills of 5 and the PostgreSQL continuation below them."""
    import random

    cluster = own_cluster  # (its feed is restarted with other thresholds)
    rng = random.Random(seed)
    users = list(range(1, 9))
    model = Model()

    async def check(c: Clients, phase: str) -> None:
        await eventually(lambda: settled(cluster), timeout=120, what=f"fan-out settled ({phase})")
        for user in users:
            got, cursor, pages = [], 0, 0
            while True:
                page = await c.feed.home(user, cursor=cursor, limit=rng.randint(1, 7))
                got += page.entries
                pages += 1
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
            want = model.feed(user)
            assert got == want, (f"{phase}: user {user}'s feed ({pages} pages) differs from the model: "
                                 f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}, "
                                 f"duplicated {len(got) != len(set(got))}")

    async def act(c: Clients, steps: int) -> None:
        for _ in range(steps):
            op = rng.random()
            a, b = rng.sample(users, 2)
            if op < 0.30:
                await c.feed.follow(a, b)
                model.follows.add((a, b))
            elif op < 0.40:
                await c.feed.unfollow(a, b)
                model.follows.discard((a, b))
            elif op < 0.88:
                entry = await post(c, a)
                model.posts[entry.media_id] = a
            else:
                mine = [m for m, author in model.posts.items() if author == a]
                if mine:
                    victim = rng.choice(mine)
                    assert await c.feed.delete_post(a, victim)
                    del model.posts[victim]

    async with cluster.clients() as c:
        await act(c, 60)
        await check(c, "threshold 3")
        assert cluster.feed is not None
        cluster.feed.stop()
        cluster.start_feed(TRENCHCOAT_FEED__CELEBRITY_THRESHOLD="2")
    async with cluster.clients() as c:
        await act(c, 50)
        await check(c, "threshold 2")
        assert cluster.feed is not None
        cluster.feed.stop()
        cluster.start_feed(TRENCHCOAT_FEED__CELEBRITY_THRESHOLD="5")
    async with cluster.clients() as c:
        await act(c, 50)
        await check(c, "threshold 5")


async def timeline(cluster, user: int) -> list[str]:
    """The user's timeline as Redis holds it (16-hex ids)."""
    from feedsvc.timelines import timeline_key

    r = cluster.redis_client()
    try:
        members: list[bytes] = await r.zrange(timeline_key(user), 0, -1)
        return [m.decode()[:16] for m in members]
    finally:
        await r.aclose()


async def test_a_celebritys_posts_are_merged_at_read_time_not_pushed(cluster, users):
    celebrity, fans, stranger, other = users(1), (users(2), users(3), users(4)), users(5), users(6)
    async with cluster.clients() as c:
        for fan in fans:  # three followers: a celebrity (threshold 3)
            await c.feed.follow(fan, celebrity)
        await c.feed.follow(fans[0], other)  # one follower: pushed
        star = await post(c, celebrity)
        normal = await post(c, other)
        await eventually(lambda: settled(cluster), what="fan-out settled")
        assert f"{normal.media_id:016x}" in await timeline(cluster, fans[0])
        assert f"{star.media_id:016x}" not in await timeline(cluster, fans[0])  # not pushed: merged when read
        for fan in fans:
            assert star in (await c.feed.home(fan)).entries
        assert star not in (await c.feed.home(stranger)).entries
        assert (await c.feed.home(fans[0])).entries[:2] == sorted([star, normal], reverse=True)
        await c.feed.unfollow(fans[1], celebrity)
        assert star not in (await c.feed.home(fans[1])).entries


async def test_a_follow_backfills_and_scrolling_continues_below_it_an_unfollow_removes(cluster, users):
    author, fan = users(1), users(2)
    async with cluster.clients() as c:
        posted = [await post(c, author) for _ in range(8)]  # more than backfill_posts (5)
        await eventually(lambda: settled(cluster), what="fan-out settled")
        await c.feed.follow(fan, author)
        assert len(await timeline(cluster, fan)) == 5  # the newest five, pushed at once
        assert await whole_feed(c, fan, limit=3) == sorted(posted, reverse=True)  # the rest from PostgreSQL
        await c.feed.unfollow(fan, author)
        assert await timeline(cluster, fan) == [] and await whole_feed(c, fan) == []


async def test_a_deleted_post_leaves_every_feed_at_once(cluster, users):
    author, fan = users(1), users(2)
    async with cluster.clients() as c:
        await c.feed.follow(fan, author)
        keep, gone = await post(c, author, "keep"), await post(c, author, "gone")
        await eventually(lambda: settled(cluster), what="fan-out settled")
        assert await c.feed.delete_post(author, gone.media_id)
        for user in (author, fan):  # before or after the cleanup job ran: never shown again
            assert (await c.feed.home(user)).entries == [keep]
            page = await c.feed.home(user, hydrate=True)
            assert [i.entry for i in page.items] == [keep]
        with pytest.raises(NotFound, match="was deleted"):  # the media went with it
            await c.media.stat(gone.media_id)
        [result] = await c.media.batch_stat([gone.media_id])
        assert result.outcome == "deleted" and result.media is not None and result.media.state == "deleted"
        await eventually(lambda: settled(cluster), what="the removal settled")
        assert f"{gone.media_id:016x}" not in await timeline(cluster, fan)


async def test_hydrated_pages_carry_captions_and_urls_that_serve(cluster, users):

    author, fan = users(1), users(2)
    async with cluster.clients() as c:
        data = os.urandom(3000)
        media = await c.media.upload(data, owner_id=author, content_type="image/jpeg")
        await c.feed.follow(fan, author)
        entry = await c.feed.post(author, media.media_id, "a caption with ünïcode ✓")
        await eventually(lambda: settled(cluster), what="fan-out settled")
        page = await c.feed.home(fan, hydrate=True)
        [item] = page.items
        assert item.entry == entry and item.caption == "a caption with ünïcode ✓"
        assert item.media.media_id == media.media_id and item.media.owner_id == author
        assert item.media.size_bytes == 3000 and item.media == await c.media.stat(media.media_id)
        path = "/" + item.media.url.split("/", 3)[3]
        async with harness.https_session() as session, session.get(cluster.gateway + path) as r:
            assert r.status == 200 and await r.read() == data


async def router_metric(cluster, name: str) -> float:
    import re


    async with harness.https_session() as session, session.get(cluster.router.metrics_url) as r:
        text = await r.text()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.MULTILINE))


async def test_a_thousand_concurrent_hydrated_reads_of_a_cold_page_cost_one_batchstat_per_id(cluster, users):
    import asyncio

    author, fan = users(1), users(2)
    async with cluster.clients() as c:
        await c.feed.follow(fan, author)
        posted = [await post(c, author) for _ in range(20)]
        await eventually(lambda: settled(cluster), what="fan-out settled")
        before = await router_metric(cluster, "trenchcoat_router_batch_stat_ids_total")
        pages = await asyncio.gather(*(c.feed.home(fan, limit=20, hydrate=True) for _ in range(1000)))
        asked = await router_metric(cluster, "trenchcoat_router_batch_stat_ids_total") - before
        assert all([i.entry for i in p.items] == sorted(posted, reverse=True) for p in pages)
        assert asked == 20, f"{asked} media ids asked of BatchStat for 20 entries read 1,000 times at once"


async def test_feeds_lost_with_redis_are_rebuilt_on_read_never_shown_empty(own_cluster):
    cluster = own_cluster  # (its Redis is emptied)
    async with cluster.clients() as c:
        await c.feed.follow(2, 1)
        await c.feed.follow(2, 3)
        posted = [await post(c, author) for author in (1, 3, 1, 2)]
        await eventually(lambda: settled(cluster), what="fan-out settled")
        r = cluster.redis_client()
        try:
            await r.flushall()  # every timeline, list, cache and the job stream: gone
        finally:
            await r.aclose()
        assert await whole_feed(c, 2, limit=2) == sorted(posted, reverse=True)  # rebuilt from PostgreSQL
        assert [i.entry for i in (await c.feed.home(2, hydrate=True)).items] == sorted(posted, reverse=True)
        assert len(await timeline(cluster, 2)) == 4
