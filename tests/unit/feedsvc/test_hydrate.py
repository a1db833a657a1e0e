"""feedsvc/hydrate.py against a real Redis (the router and PostgreSQL stood in for by
plain objects answering what they would): leases, a fill that raced a change of the
facts, and entries whose facts cannot be had."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest
import redis.asyncio as aioredis

from feedsvc.hydrate import MetadataCache
from feedsvc.model import Entry, Post, PostState
from feedsvc.service import media_info
from trenchcoat import media_facts
from trenchcoat.clients.media import Media, StatResult
from trenchcoat.errors import Unavailable
from trenchcoat.v1 import media_pb2

AUTHOR = 7


def facts(media_id: int, renditions_state: str = "pending") -> Media:
    return Media(media_id=media_id, owner_id=AUTHOR, content_type="image/jpeg", size_bytes=10, created_unix_ms=1,
                 state="active", tier="hot", url=f"http://cdn/{media_id}", renditions_state=renditions_state)


class Records:
    async def posts(self, ids: Sequence[int]) -> dict[int, Post]:
        return {i: Post(i, AUTHOR, f"caption {i}", True, PostState.LIVE) for i in ids}


class Routers:
    """BatchStat as the router answers it; ``during`` runs while a fetch is under way."""

    def __init__(self) -> None:
        self.unavailable: set[int] = set()
        self.down = False
        self.calls = 0
        self.during: Callable[[], Awaitable[None]] | None = None
        self.state = "pending"

    async def batch_stat(self, ids: Sequence[int]) -> list[StatResult]:
        self.calls += 1
        if self.during is not None:
            await self.during()
        if self.down:
            raise Unavailable("no router answered BatchStat")
        return [StatResult(i, "unavailable", reason="volume 3 has no replicas") if i in self.unavailable
                else StatResult(i, "found", facts(i, self.state)) for i in ids]


@pytest.fixture
async def redis(redis_server):
    client = aioredis.Redis.from_url(redis_server.endpoint)
    yield client
    await client.aclose()


def cache(redis, routers: Routers) -> MetadataCache:
    return MetadataCache(redis, Records(), routers, ttl_s=300, lease_period_s=10, lease_wait_s=2)  # type: ignore[arg-type]


def entries(n: int) -> list[Entry]:
    base = random.getrandbits(40) << 20
    return [Entry(base + i, AUTHOR) for i in range(n)]


async def test_a_fill_that_raced_a_change_is_shown_but_not_kept(redis):
    routers = Routers()
    [entry] = entries(1)

    async def renditions_finish_meanwhile():
        routers.during = None
        await media_facts.drop(redis, entry.media_id)  # what the router does on FinishRenditions

    routers.during = renditions_finish_meanwhile
    found = await cache(redis, routers).hydrate([entry])
    assert [h.entry for h in found.hydrated] == [entry]  # this reader shows what it fetched
    assert await redis.get(media_facts.meta_key(entry.media_id)) is None  # but nobody keeps the stale facts
    routers.state = "done"
    again = await cache(redis, routers).hydrate([entry])
    assert again.hydrated[0].media["renditions_state"] == "done" and routers.calls == 2


async def test_dropped_facts_are_fetched_afresh_at_once(redis):
    routers = Routers()
    batch = entries(2)
    first = await cache(redis, routers).hydrate(batch)
    assert [h.media["renditions_state"] for h in first.hydrated] == ["pending", "pending"]
    routers.state = "done"
    assert (await cache(redis, routers).hydrate(batch)).hydrated == first.hydrated  # cached: no new fetch
    await media_facts.drop(redis, batch[0].media_id)
    found = await cache(redis, routers).hydrate(batch)
    assert [h.media["renditions_state"] for h in found.hydrated] == ["done", "pending"]
    assert routers.calls == 2


async def test_an_entry_that_cannot_be_described_is_unhydrated_and_the_rest_hydrate(redis):
    routers = Routers()
    batch = entries(3)
    routers.unavailable = {batch[1].media_id}
    found = await cache(redis, routers).hydrate(batch)
    assert [h.entry for h in found.hydrated] == [batch[0], batch[2]] and not found.gone
    [(entry, reason)] = [(u.entry, u.reason) for u in found.unhydrated]
    assert entry == batch[1] and "volume 3 has no replicas" in reason
    routers.unavailable = set()
    again = await cache(redis, routers).hydrate(batch)  # its lease was given back: no wait for the period
    assert [h.entry for h in again.hydrated] == batch and routers.calls == 2


async def test_routers_away_leave_the_page_unhydrated_not_failed(redis):
    routers = Routers()
    cached, fresh = entries(2)
    await cache(redis, routers).hydrate([cached])
    routers.down = True
    found = await cache(redis, routers).hydrate([cached, fresh])
    assert [h.entry for h in found.hydrated] == [cached]  # what the cache holds still hydrates
    assert [u.entry for u in found.unhydrated] == [fresh] and "no router answered" in found.unhydrated[0].reason
    assert await redis.get(media_facts.meta_key(fresh.media_id)) is None
    routers.down = False
    assert [h.entry for h in (await cache(redis, routers).hydrate([fresh])).hydrated] == [fresh]


def test_hydrated_entries_carry_the_renditions_state_and_the_displayed_size():
    """What the metadata cache keeps turns back into the MediaInfo the router gave."""
    kept = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(facts(5, "done"), width=1500, height=2000))))
    info = media_info(kept)
    assert info.renditions_state == media_pb2.RENDITIONS_DONE
    assert (info.width, info.height, info.tier) == (1500, 2000, media_pb2.TIER_HOT)
