"""The feed's rows over two PostgreSQL instances (feedsvc/records.py) against an in-memory
model: posts, deletes, follows and unfollows of users on both instances in a random order;
every home page exact, whom each user follows and is followed by exact once the follow-ups
have run, and every row on the instance its shard says (a post on its author's, an edge on
its follower's and its followee's, nowhere else)."""

from __future__ import annotations

import random

import asyncpg
import pytest

from feedsvc.records import Records
from tests.integration.test_shards import over_two
from trenchcoat import ids

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
USERS = [3, 5, 77, 4099, 4100, 6000, 8195, 12_300, 20_000, 16_390]
"""Users on both instances (shard = user % 8192: below 4096 on the first), some sharing one."""


@pytest.fixture
async def feed(postgres):
    dsns, shard_map, records = await over_two(Records, postgres)
    yield records, shard_map, dict(zip(shard_map.instances, dsns, strict=True))
    await records.close()


async def rows(dsn: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(post id, author) and (follower, followee) rows in one database."""
    conn = await asyncpg.connect(dsn)
    try:
        posts = {(ids.from_signed(r[0]), r[1]) for r in await conn.fetch("SELECT post_id, author_id FROM feed_posts")}
        edges = {(r[0], r[1]) for r in await conn.fetch("SELECT follower_id, followee_id FROM feed_follows")}
        return posts, edges
    finally:
        await conn.close()


async def test_random_posts_follows_and_deletes_over_two_instances_match_a_model(feed):
    records, shard_map, dsn_of = feed
    rng = random.Random(26)
    live: dict[int, int] = {}  # post -> author
    dead: dict[int, int] = {}
    following: set[tuple[int, int]] = set()
    touched: set[tuple[int, int]] = set()
    ms = 1_000_000

    async def check() -> None:
        for follower, followee in sorted(touched):  # the follow-ups (the sweeper's, at the latest)
            assert await records.settle_edge(follower, followee) == ((follower, followee) in following)
        for user in USERS:
            assert sorted(await records.followees(user)) == sorted(e for f, e in following if f == user)
            assert await records.followers(user, 0, 100) == sorted(f for f, e in following if e == user)
            assert await records.follower_count(user) == sum(1 for _, e in following if e == user)
            authors = {e for f, e in following if f == user} | {user}
            want = sorted((p for p, a in live.items() if a in authors), reverse=True)
            got: list[int] = []
            cursor = 0
            while True:  # pages of 4, each from the cursor on
                page = await records.home_posts(user, before=cursor, limit=4)
                got += [e.media_id for e in page]
                if len(page) < 4:
                    break
                cursor = page[-1].media_id
            assert got == want, f"user {user}'s home feed"
        placed = {name: await rows(dsn) for name, dsn in dsn_of.items()}
        for name, (posts, edges) in placed.items():
            assert all(shard_map.instance_of_user(a) == name == shard_map.instance_of_id(p) for p, a in posts)
            assert all(name in (shard_map.instance_of_user(f), shard_map.instance_of_user(e)) for f, e in edges)
            assert {(f, e) for f, e in following if name in (shard_map.instance_of_user(f),
                                                               shard_map.instance_of_user(e))} == edges
        assert {p for posts, _ in placed.values() for p, _ in posts} == set(live) | set(dead)

    for step in range(240):
        op = rng.random()
        if op < 0.35:
            author = rng.choice(USERS)
            ms += rng.randrange(1, 5)
            media_id = ids.make_id(ms, ids.shard_for_user(author), rng.randrange(1024))
            change = await records.create_post(media_id, author, "", celebrity_threshold=1000)
            assert change.changed
            live[media_id] = author
        elif op < 0.45 and live:
            media_id = rng.choice(sorted(live))
            assert (await records.delete_post(media_id, hold_s=600.0)) is not None
            dead[media_id] = live.pop(media_id)
        else:
            follower, followee = rng.sample(USERS, 2)
            touched.add((follower, followee))
            if (follower, followee) in following and rng.random() < 0.5:
                assert await records.unfollow(follower, followee, hold_s=600.0) is not None
                following.discard((follower, followee))
            elif (follower, followee) not in following:
                assert await records.follow(follower, followee, hold_s=600.0) is not None
                following.add((follower, followee))
            if rng.random() < 0.5:  # the request's own follow-up; otherwise the sweeper's, later
                await records.settle_edge(follower, followee)
        if step % 60 == 59:
            await check()
    await check()
    # Every follow-up was recorded beside its edge or post (one a pair, one a delete), and
    # the count asks both instances.
    assert await records.pending_intents() == len(touched) + len(dead)


async def test_a_finished_follow_up_is_kept_a_while_and_done_again_when_redis_changes(feed):
    records, _, _ = feed
    edges = {(3, 4099), (4100, 5)}  # one follower on each instance
    for follower, followee in edges:
        assert await records.follow(follower, followee, hold_s=0.0) is not None

    async def finish_all() -> set[tuple[int, int]]:
        claimed = await records.claim_intents(10, hold_s=60.0)
        for intent in claimed:
            await records.finish_intent(intent)
        return {(i.a, i.b) for i in claimed}

    assert await finish_all() == edges
    assert await records.pending_intents() == 0 and await finish_all() == set()
    # Redis seen, then another Redis (a failover): what finished shortly before is due again.
    assert await records.redis_changed("run-a", 30.0) == 0
    assert await records.redis_changed("run-a", 30.0) == 0
    assert await records.redis_changed("run-b", 30.0) == 2
    assert await records.pending_intents() == 2 and await finish_all() == edges
    # A later change of a finished edge makes its intent pending again; only finished ones go.
    assert await records.unfollow(3, 4099, hold_s=600.0) is not None
    assert await records.forget_finished_intents(3600.0, 100) == 0
    assert await records.forget_finished_intents(0.0, 100) == 1
    assert await records.pending_intents() == 1
