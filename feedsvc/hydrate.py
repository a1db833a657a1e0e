"""Hydration: the small facts of feed entries (caption, author, the media's MediaInfo with
its CDN URL) through a metadata cache in Redis, with leases against thundering herds (the
seed's "Scaling Memcache" fix).

A reader GETs ``meta:{m<id>}`` for each entry. For each miss it tries to take the lease
``lease:{m<id>}`` (SET NX with a ``lease_period_s`` expiry, released early only by a
holder whose fetch failed): the entries whose lease it got, it fetches itself, in one
``MediaService.BatchStat`` and one PostgreSQL query for the captions, and writes to the
cache for ``metadata_ttl_s``; entries whose lease another reader holds, it waits for (at
most ``lease_wait_s``), taking the lease over if its holder released it. So however many
readers miss at once, each media_id costs at most one BatchStat per lease period. A
deleted post or media is cached as gone (and a delete's "gone" is never overwritten by a
fetch that raced it): such entries never hydrate, and the reader drops them (and removes
them from its timeline). Media deleted through ``MediaService.Delete`` rather than
``DeletePost`` leaves its post live; it stops hydrating once its cached facts expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis

from feedsvc import metrics
from feedsvc.media import Routers
from feedsvc.model import Entry, Hydrated, PostState
from feedsvc.records import Records
from trenchcoat.errors import TrenchcoatError, Unavailable
from trenchcoat.redisio import failures

GONE = b'{"gone":true}'

SET_UNLESS_GONE = """
-- KEYS[1] meta:{m<id>}; ARGV[1] the facts, ARGV[2] the gone marker, ARGV[3] ttl in ms.
-- A delete that wrote "gone" while a reader fetched the facts wins.
if redis.call('GET', KEYS[1]) == ARGV[2] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

RELEASE = """
-- KEYS[1] lease:{m<id>}; ARGV[1] the holder's token: only the holder releases it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def meta_key(media_id: int) -> str:
    return f"meta:{{m{media_id}}}"


def lease_key(media_id: int) -> str:
    return f"lease:{{m{media_id}}}"


class MetadataCache:
    def __init__(self, redis: aioredis.Redis, records: Records, routers: Routers, *,
                 ttl_s: float, lease_period_s: float, lease_wait_s: float) -> None:
        self._redis = redis
        self._records = records
        self._routers = routers
        self._ttl_ms = int(ttl_s * 1000)
        self._lease_ms = int(lease_period_s * 1000)
        self._wait_s = lease_wait_s
        self._set_unless_gone = redis.register_script(SET_UNLESS_GONE)
        self._release = redis.register_script(RELEASE)

    async def hydrate(self, entries: Sequence[Entry]) -> tuple[list[Hydrated], list[Entry]]:
        """(the entries that hydrate, in order; the ones that are gone)."""
        if not entries:
            return [], []
        ids = [e.media_id for e in entries]
        facts = {i: v for i, v in (await self._get(ids)).items() if v is not None}
        missing = [i for i in ids if i not in facts]
        metrics.HYDRATION.labels("hit").inc(len(ids) - len(missing))
        if missing:
            metrics.HYDRATION.labels("miss").inc(len(missing))
            facts |= await self._fetch(missing)
        hydrated, gone = [], []
        for entry in entries:
            raw = facts[entry.media_id]
            if raw == GONE:
                gone.append(entry)
                continue
            value = json.loads(raw)
            hydrated.append(Hydrated(entry, value["caption"], value["media"]))
        return hydrated, gone

    async def forget(self, media_id: int) -> None:
        """Caches the entry as gone (a delete)."""
        with failures("the metadata cache"):
            await self._redis.set(meta_key(media_id), GONE, px=self._ttl_ms)

    async def _fetch(self, ids: Sequence[int]) -> dict[int, bytes]:
        """The facts of entries not in the cache: fetched here for those whose lease this
        reader takes, waited for (at most lease_wait_s) for those another reader holds.
        A lease whose holder failed (and released it) or vanished is taken over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        token = secrets.token_hex(8).encode()
        out: dict[int, bytes] = {}
        pending = list(ids)
        pause = 0.005
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
                raise Unavailable(f"the facts of {len(pending)} feed entries are being fetched by another "
                                  f"reader (over {self._wait_s:g}s so far); retry")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _get(self, ids: Sequence[int]) -> dict[int, bytes | None]:
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.get(meta_key(i))
        with failures("the metadata cache"):
            values = await pipe.execute()
        return dict(zip(ids, values, strict=True))

    async def _leases(self, ids: Sequence[int], token: bytes) -> set[int]:
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.set(lease_key(i), token, nx=True, px=self._lease_ms)
        with failures("metadata leases"):
            got = await pipe.execute()
        return {i for i, ok in zip(ids, got, strict=True) if ok}

    async def _fill(self, ids: list[int], token: bytes) -> dict[int, bytes]:
        try:
            posts = await self._records.posts(ids)
            infos = await self._routers.batch_stat(ids)
        except TrenchcoatError:
            # Let the next reader try at once rather than wait out the lease period.
            pipe = self._redis.pipeline(transaction=False)
            for i in ids:
                await self._release(keys=[lease_key(i)], args=[token], client=pipe)
            with failures("releasing metadata leases"):
                await pipe.execute()
            raise
        out: dict[int, bytes] = {}
        for media_id, media in zip(ids, infos, strict=True):
            post = posts.get(media_id)
            if post is None or post.state is not PostState.LIVE or media is None or media.state != "active":
                out[media_id] = GONE
                continue
            out[media_id] = json.dumps({"caption": post.caption, "media": dataclasses.asdict(media)},
                                       separators=(",", ":")).encode()
        pipe = self._redis.pipeline(transaction=False)
        for media_id, raw in out.items():
            await self._set_unless_gone(keys=[meta_key(media_id)], args=[raw, GONE, self._ttl_ms], client=pipe)
        with failures("the metadata cache"):
            written = await pipe.execute()
        for (media_id, _), kept in zip(out.items(), written, strict=True):
            if not kept:
                out[media_id] = GONE  # deleted while this reader fetched
        return out
