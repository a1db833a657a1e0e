"""The feed's cache of media facts in Redis: part of the contract, because two services
touch it. The feed fills it (``feedsvc/hydrate.py``: one fetch per media_id per lease
period, through ``MediaService.BatchStat``); the router drops an object's entry when its
facts change (its renditions finished, it was deleted), so a feed shows the new facts at
once instead of after ``feed.metadata_ttl_s``.

| key | type | holds |
|---|---|---|
| ``meta:{m<id>}`` | string | the hydrated facts (JSON: caption and MediaInfo fields), or ``GONE`` |
| ``lease:{m<id>}`` | string | the token of the reader fetching them (expires after ``feed.lease_period_s``) |

A fill is written only while its reader still holds the lease, and dropping an entry
drops its lease too: a fill that raced a change is not cached (memcache's lease rule), so
what the router dropped cannot come back stale. Both keys of one media share a hash tag,
so the drop is one transaction on Redis Cluster too.
"""

from __future__ import annotations

from trenchcoat import redisio
from trenchcoat.redisio import failures

GONE = b'{"gone":true}'
"""The cached facts of a deleted post or media: it never hydrates."""


def meta_key(media_id: int) -> str:
    return f"meta:{{m{media_id}}}"


def lease_key(media_id: int) -> str:
    return f"lease:{{m{media_id}}}"


async def drop(redis: redisio.Client, media_id: int) -> None:
    """Drops the cached facts of ``media_id`` and any fill under way (its lease): the next
    reader fetches them afresh. Unavailable when Redis cannot be reached."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(meta_key(media_id), lease_key(media_id))
        with failures(f"dropping the cached facts of media {media_id}"):
            await pipe.execute()
