"""Hydration: the small facts of feed entries (caption, author, the media's MediaInfo with
its CDN URL) through a metadata cache in Redis, with leases against thundering herds (the
seed's "Scaling Memcache" fix).

A reader GETs ``meta:{m<id>}`` for each entry. For each miss it tries to take the lease
``lease:{m<id>}`` (SET NX with a ``lease_period_s`` expiry, never released early): the
entries whose lease it got, it fetches itself, in one ``MediaService.BatchStat`` and one
PostgreSQL query for the captions, and writes to the cache for ``metadata_ttl_s``;
entries whose lease another reader holds, it waits for (at most ``lease_wait_s``), then
reads from the cache. So however many readers miss at once, each media_id costs at most
one BatchStat per lease period. A deleted post or media is cached as gone: such entries
never hydrate, and the reader drops them (and removes them from its timeline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis

from feedsvc import metrics
from feedsvc.model import Entry, Hydrated, PostState
from feedsvc.records import Records
from trenchcoat.errors import TrenchcoatError, Unavailable
from trenchcoat.media_client import MediaClient
from trenchcoat.redisio import failures

GONE = b'{"gone":true}'


def meta_key(media_id: int) -> str:
    return f"meta:{{m{media_id}}}"


def lease_key(media_id: int) -> str:
    return f"lease:{{m{media_id}}}"


class MetadataCache:
    def __init__(self, redis: aioredis.Redis, records: Records, routers: Sequence[MediaClient], *,
                 ttl_s: float, lease_period_s: float, lease_wait_s: float) -> None:
        self._redis = redis
        self._records = records
        self._routers = list(routers)
        self._turn = itertools.count()
        self._ttl_ms = int(ttl_s * 1000)
        self._lease_ms = int(lease_period_s * 1000)
        self._wait_s = lease_wait_s

    async def hydrate(self, entries: Sequence[Entry]) -> tuple[list[Hydrated], list[Entry]]:
        """(the entries that hydrate, in order; the ones that are gone)."""
        if not entries:
            return [], []
        ids = [e.media_id for e in entries]
        facts: dict[int, bytes | None] = await self._get(ids)
        missing = [i for i in ids if facts.get(i) is None]
        metrics.HYDRATION.labels("hit").inc(len(ids) - len(missing))
        if missing:
            metrics.HYDRATION.labels("miss").inc(len(missing))
            mine = await self._leases(missing)
            metrics.HYDRATION.labels("lease_grant").inc(len(mine))
            if mine:
                facts |= await self._fill(mine)
            others = [i for i in missing if i not in mine]
            if others:
                metrics.HYDRATION.labels("lease_wait").inc(len(others))
                facts |= await self._wait(others)
        hydrated, gone = [], []
        for entry in entries:
            raw = facts[entry.media_id]
            if raw is None or raw == GONE:
                gone.append(entry)
                continue
            value = json.loads(raw)
            hydrated.append(Hydrated(entry, value["caption"], value["media"]))
        return hydrated, gone

    async def forget(self, media_id: int) -> None:
        """Caches the entry as gone (a delete)."""
        with failures("the metadata cache"):
            await self._redis.set(meta_key(media_id), GONE, px=self._ttl_ms)

    async def _get(self, ids: Sequence[int]) -> dict[int, bytes | None]:
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.get(meta_key(i))
        with failures("the metadata cache"):
            values = await pipe.execute()
        return dict(zip(ids, values, strict=True))

    async def _leases(self, ids: Sequence[int]) -> set[int]:
        token = secrets.token_hex(8)
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.set(lease_key(i), token, nx=True, px=self._lease_ms)
        with failures("metadata leases"):
            got = await pipe.execute()
        return {i for i, ok in zip(ids, got, strict=True) if ok}

    async def _fill(self, ids: set[int]) -> dict[int, bytes]:
        wanted = sorted(ids)
        posts = await self._records.posts(wanted)
        infos = await self._batch_stat(wanted)
        out: dict[int, bytes] = {}
        for media_id, media in zip(wanted, infos, strict=True):
            post = posts.get(media_id)
            if post is None or post.state is not PostState.LIVE or media is None or media.state != "active":
                out[media_id] = GONE
                continue
            out[media_id] = json.dumps({"caption": post.caption, "media": dataclasses.asdict(media)},
                                       separators=(",", ":")).encode()
        pipe = self._redis.pipeline(transaction=False)
        for media_id, raw in out.items():
            pipe.set(meta_key(media_id), raw, px=self._ttl_ms)
        with failures("the metadata cache"):
            await pipe.execute()
        return out

    async def _batch_stat(self, ids: Sequence[int]):
        """BatchStat on the routers in turn until one answers."""
        last: TrenchcoatError | None = None
        start = next(self._turn)
        for k in range(len(self._routers)):
            router = self._routers[(start + k) % len(self._routers)]
            try:
                return await router.batch_stat(ids)
            except Unavailable as exc:
                last = exc
        raise Unavailable(f"no router answered BatchStat for hydration; retry ({last})")

    async def _wait(self, ids: Sequence[int]) -> dict[int, bytes]:
        """The facts another reader is fetching, once it wrote them (at most lease_wait_s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = 0.005
        pending = list(ids)
        out: dict[int, bytes] = {}
        while True:
            got = await self._get(pending)
            out |= {i: v for i, v in got.items() if v is not None}
            pending = [i for i in pending if i not in out]
            if not pending:
                return out
            if loop.time() >= deadline:
                raise Unavailable(f"the facts of {len(pending)} feed entries are being fetched by another "
                                  f"reader (over {self._wait_s:g}s so far); retry")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
