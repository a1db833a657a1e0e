"""Hydration: the small facts of feed entries (caption, author, the media's MediaInfo with
its CDN URL) through a metadata cache in Redis, with leases against thundering herds (the
seed's "Scaling Memcache" fix). The key layout is in the contract (``trenchcoat.media_facts``):
the router drops an entry when the media's facts change.

A reader GETs ``meta:{m<id>}`` for each entry. For each miss it tries to take the lease
``lease:{m<id>}`` (SET NX with a ``lease_period_s`` expiry, released early only by a
holder whose fetch failed): the entries whose lease it got, it fetches itself, in one
``MediaService.BatchStat`` and one PostgreSQL query for the captions, and writes to the
cache for ``metadata_ttl_s`` if it still holds the lease then (a change dropped the entry
and its lease meanwhile: the fetched facts may be the old ones, so they are not cached);
entries whose lease another reader holds, it waits for (at most ``lease_wait_s``), taking
the lease over if its holder released it. So however many readers miss at once, each
media_id costs at most one BatchStat per lease period. A deleted post or media is cached
as gone (and a delete's "gone" is never overwritten by a fetch that raced it): such entries
never hydrate, and the reader drops them (and removes them from its timeline). An entry
whose facts cannot be had now (the routers away, its media's volume map unreachable, the
lease holder too slow) is returned unhydrated with the reason; the rest of the page is not
held back by it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from feedsvc import metrics
from feedsvc.media import Routers
from feedsvc.model import Entry, Hydrated, PostState
from feedsvc.records import Records
from trenchcoat import redisio
from trenchcoat.backoff import Backoff
from trenchcoat.errors import TrenchcoatError
from trenchcoat.media_facts import GONE, lease_key, meta_key
from trenchcoat.redisio import failures

SET_IF_LEASED = """
-- KEYS[1] meta:{m<id>}, KEYS[2] lease:{m<id>}; ARGV[1] the facts, ARGV[2] the gone
-- marker, ARGV[3] ttl in ms, ARGV[4] the reader's lease token.
-- 0: a delete wrote "gone" while the reader fetched (it wins); -1: the entry was dropped
-- (its lease with it) while the reader fetched, so what it fetched may be stale: not kept.
if redis.call('GET', KEYS[1]) == ARGV[2] then
    return 0
end
if redis.call('GET', KEYS[2]) ~= ARGV[4] then
    return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

LEASE_WAIT = Backoff(base_s=0.005, max_s=0.1, jitter=0.0)
"""How often a reader waiting for another's lease looks again: soon at first (the holder's
fetch is one BatchStat), then every 0.1 s."""

RELEASE = """
-- KEYS[1] lease:{m<id>}; ARGV[1] the holder's token: only the holder releases it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Unhydrated:
    """An entry whose facts could not be had now."""

    entry: Entry
    reason: str


@dataclass(frozen=True, slots=True)
class Hydration:
    """What hydrating a page's entries found, each list in the entries' order."""

    hydrated: list[Hydrated]
    gone: list[Entry]
    """Deleted posts or media: out of the page (and of the timeline)."""
    unhydrated: list[Unhydrated]


class MetadataCache:
    def __init__(self, redis: redisio.Client, records: Records, routers: Routers, *,
                 ttl_s: float, lease_period_s: float, lease_wait_s: float) -> None:
        self._redis = redis
        self._records = records
        self._routers = routers
        self._ttl_ms = int(ttl_s * 1000)
        self._lease_ms = int(lease_period_s * 1000)
        self._wait_s = lease_wait_s
        self._set_if_leased = redis.register_script(SET_IF_LEASED)
        self._release = redis.register_script(RELEASE)

    async def hydrate(self, entries: Sequence[Entry]) -> Hydration:
        if not entries:
            return Hydration([], [], [])
        ids = [e.media_id for e in entries]
        facts: dict[int, bytes | str] = {i: v for i, v in (await self._get(ids)).items() if v is not None}
        missing = [i for i in ids if i not in facts]
        metrics.HYDRATION.labels("hit").inc(len(ids) - len(missing))
        if missing:
            metrics.HYDRATION.labels("miss").inc(len(missing))
            facts |= await self._fetch(missing)
        out = Hydration([], [], [])
        for entry in entries:
            raw = facts[entry.media_id]
            if isinstance(raw, str):  # why its facts could not be had
                metrics.HYDRATION.labels("unhydrated").inc()
                out.unhydrated.append(Unhydrated(entry, raw))
            elif raw == GONE:
                out.gone.append(entry)
            else:
                value = json.loads(raw)
                out.hydrated.append(Hydrated(entry, value["caption"], value["media"]))
        return out

    async def forget(self, media_id: int) -> None:
        """Caches the entry as gone (a delete), voiding any fill under way."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(meta_key(media_id), GONE, px=self._ttl_ms)
            pipe.delete(lease_key(media_id))
            with failures("the metadata cache"):
                await pipe.execute()

    async def _fetch(self, ids: Sequence[int]) -> dict[int, bytes | str]:
        """The facts of entries not in the cache (or, as a string, why they cannot be had
        now): fetched here for those whose lease this reader takes, waited for (at most
        lease_wait_s) for those another reader holds. A lease whose holder failed (and
        released it) or vanished is taken over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        token = secrets.token_hex(8).encode()
        out: dict[int, bytes | str] = {}
        pending = list(ids)
        waits = 0
        waited = False
        while True:
            mine = await self._leases(pending, token)
            if mine:
                metrics.HYDRATION.labels("lease_grant").inc(len(mine))
                out |= await self._fill(sorted(mine), token)
            pending = [i for i in pending if i not in out]
            if pending:
                got = await self._get(pending)
                out |= {i: v for i, v in got.items() if v is not None}
                pending = [i for i in pending if i not in out]
            if not pending:
                return out
            if not waited:
                metrics.HYDRATION.labels("lease_wait").inc(len(pending))
                waited = True
            if loop.time() >= deadline:
                why = f"another reader has been fetching its facts for over {self._wait_s:g}s"
                return out | dict.fromkeys(pending, why)
            waits += 1
            await asyncio.sleep(LEASE_WAIT.pause(waits))

    async def _get(self, ids: Sequence[int]) -> dict[int, bytes | None]:
        batch = redisio.Batch(self._redis)
        for i in ids:
            batch.add("GET", meta_key(i))
        with failures("the metadata cache"):
            values = await batch.execute()
        return dict(zip(ids, values, strict=True))

    async def _leases(self, ids: Sequence[int], token: bytes) -> set[int]:
        batch = redisio.Batch(self._redis)
        for i in ids:
            batch.add("SET", lease_key(i), token, "NX", "PX", self._lease_ms)
        with failures("metadata leases"):
            got = await batch.execute()
        return {i for i, ok in zip(ids, got, strict=True) if ok}

    async def _fill(self, ids: list[int], token: bytes) -> dict[int, bytes | str]:
        try:
            posts = await self._records.posts(ids)
            results = await self._routers.batch_stat(ids)
        except TrenchcoatError as exc:
            # Let the next reader try at once rather than wait out the lease period.
            await self._give_back(ids, token)
            return dict.fromkeys(ids, f"its facts cannot be fetched now: {exc}")
        out: dict[int, bytes | str] = {}
        for media_id, result in zip(ids, results, strict=True):
            post = posts.get(media_id)
            if result.outcome == "unavailable":
                out[media_id] = f"media {media_id} cannot be described now: {result.reason}"
            elif (post is None or post.state is not PostState.LIVE or result.media is None
                  or result.media.state != "active"):
                out[media_id] = GONE
            else:
                out[media_id] = json.dumps({"caption": post.caption, "media": dataclasses.asdict(result.media)},
                                           separators=(",", ":")).encode()
        failed = [m for m, v in out.items() if isinstance(v, str)]
        if failed:
            await self._give_back(failed, token)
        kept = {m: v for m, v in out.items() if isinstance(v, bytes)}

        def queue(batch: redisio.Batch) -> None:
            for media_id, raw in kept.items():
                batch.script(self._set_if_leased, [meta_key(media_id), lease_key(media_id)],
                             [raw, GONE, self._ttl_ms, token])

        written = await redisio.pipelined(self._redis, queue, "the metadata cache", SET_IF_LEASED)
        for media_id, outcome in zip(kept, written, strict=True):
            if outcome == 0:
                out[media_id] = GONE  # deleted while this reader fetched
            elif outcome < 0:
                metrics.HYDRATION.labels("changed").inc()  # this reader shows what it fetched; nobody keeps it
        return out

    async def _give_back(self, ids: Sequence[int], token: bytes) -> None:
        """Releases this reader's leases on ``ids`` (a failed fetch: the next reader tries)."""

        def queue(batch: redisio.Batch) -> None:
            for i in ids:
                batch.script(self._release, [lease_key(i)], [token])

        await redisio.pipelined(self._redis, queue, "releasing metadata leases", RELEASE)
