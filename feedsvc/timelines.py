"""The feed's keys in Redis, and the operations on them. Redis is a cache of PostgreSQL
here: every key can be lost and is rebuilt from the truth on the next read.

| key | type | holds |
|---|---|---|
| ``tl:{u<id>}`` | sorted set | a user's home timeline: pushed posts of followees and the user's own |
| ``tl:{u<id>}:m`` | hash | ``built`` (rebuilt since Redis last lost it), ``floor`` (hex id: entries below it may be missing) |
| ``fol:{u<id>}`` | set | whom the user follows (``*`` marks it built), tagged ``v`` in ``tl:{u<id>}:m``; expires after 10 minutes |
| ``ps:{u<id>}`` | string | followed authors with pull posts: ``<epoch>:<follow version>:<id>,<id>...`` |
| ``fv:{u<id>}`` | string | the user's follow version: a new random value after every follow or unfollow commits |
| ``pull:{a<id>}`` | sorted set | a celebrity's recent posts that were not fanned out (``feed.celebrity_recent``) |
| ``pull:{a<id>}:m`` | hash | ``built`` |
| ``feed:pull-epoch`` | string | bumped whenever an author's first pull post appears or its last one goes |
| ``feed:deleted`` | sorted set | posts deleted in the last day (member: 16-hex id, score: unix time): reads drop them, whatever a timeline still holds |
| ``meta:{m<id>}``, ``lease:{m<id>}`` | string | hydrated facts and their lease (``feedsvc/hydrate.py``) |
| ``feed:{fanout}``, ``feed:{fanout}:dead`` | stream | fan-out jobs and dead letters (``feedsvc/fanout.py``) |

**Redis Cluster.** The braces are hash tags: every key of one user (``{u<id>}``), one
celebrity (``{a<id>}``) or one media object (``{m<id>}``) lands in one slot, and every
multi-key command or transaction here touches one tag's keys only. The global keys are
read with single-key commands.

**Exact order.** A sorted set's scores are doubles, exact only to 2^53; a media_id is
~2^62, so ids 512 apart would share a score and ``ZREVRANGEBYSCORE (cursor`` would skip
or repeat entries at page edges. Here every score is 0 and a member is the entry in fixed
width, ``<16 hex media_id><16 hex author_id>``: Redis orders equal-score members
lexicographically, which is id order, and ``ZREVRANGEBYLEX key (<16 hex cursor> -`` is
exactly ``media_id < cursor`` (a member with the cursor's id is longer than the bound, so
it sorts above it and is excluded).

**Floors.** A list trimmed to its cap has lost its oldest entries; a backfill may stop
short of a followee's oldest post. Either raises the list's floor (``floor`` in its hash,
only ever raised): entries at or above it are all there, below it some may be missing, and
a read goes to PostgreSQL for those. Adding and trimming run as one script
(``ADD_AND_TRIM``), so a trim always records its floor, even if entries removed later
(an unfollow, a delete) bring the list back under its cap.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feedsvc.model import Entry
from trenchcoat import redisio
from trenchcoat.redisio import failures

ID_HEX = 16
BUILT = b"built"
FLOOR = b"floor"
FOLLOWS_BUILT = b"*"
ADD_AND_TRIM = """
-- KEYS[1] a timeline or celebrity list, KEYS[2] its hash (same hash tag);
-- ARGV[1] the cap, ARGV[2] a floor to raise to ('' for none: a backfill that stopped
-- short), ARGV[3..] members to add (every score 0).
local function raise(floor)
    local current = redis.call('HGET', KEYS[2], 'floor')
    if (not current) or current < floor then
        redis.call('HSET', KEYS[2], 'floor', floor)
    end
end
for i = 3, #ARGV do
    redis.call('ZADD', KEYS[1], 0, ARGV[i])
end
local removed = redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
if removed > 0 then
    raise(string.sub(redis.call('ZRANGE', KEYS[1], 0, 0)[1], 1, 16))
end
if ARGV[2] ~= '' then
    raise(ARGV[2])
end
return removed
"""
"""Adds entries, trims to the cap and raises the floor (to what the trim removed, and to a
given one) in one step."""
PULL_EPOCH = "feed:pull-epoch"
PULL_SET_TTL_S = 60
FOLLOWS_TTL_S = 600
DELETED = "feed:deleted"


def timeline_key(user_id: int) -> str:
    return f"tl:{{u{user_id}}}"


def timeline_meta(user_id: int) -> str:
    return f"tl:{{u{user_id}}}:m"


def follows_key(user_id: int) -> str:
    return f"fol:{{u{user_id}}}"


def pull_set_key(user_id: int) -> str:
    return f"ps:{{u{user_id}}}"


def follow_version_key(user_id: int) -> str:
    return f"fv:{{u{user_id}}}"


def pull_key(author_id: int) -> str:
    return f"pull:{{a{author_id}}}"


def pull_meta(author_id: int) -> str:
    return f"pull:{{a{author_id}}}:m"


def member(entry: Entry) -> bytes:
    return f"{entry.media_id:0{ID_HEX}x}{entry.author_id:0{ID_HEX}x}".encode()


def entry_of(raw: bytes) -> Entry:
    text = raw.decode()
    return Entry(int(text[:ID_HEX], 16), int(text[ID_HEX:], 16))


def id_hex(media_id: int) -> str:
    return f"{media_id:0{ID_HEX}x}"


def below(cursor: int) -> str:
    """The ZREVRANGEBYLEX upper bound for ``media_id < cursor`` (0: everything)."""
    return f"({id_hex(cursor)}" if cursor else "+"


@dataclass(frozen=True, slots=True)
class Window:
    """One source's newest entries below a cursor, and how far down it is complete."""

    entries: list[Entry]
    floor: int
    """Entries with ids at or above this are all in the source; below it some may be
    missing (0: the source is complete)."""


class Timelines:
    """Timelines, celebrity lists and the caches beside them."""

    def __init__(self, redis: redisio.Client, *, timeline_max: int, celebrity_recent: int) -> None:
        self.redis = redis
        self.timeline_max = timeline_max
        self.celebrity_recent = celebrity_recent
        self._add_and_trim = redis.register_script(ADD_AND_TRIM)

    # --- writes (fan-out, backfill, cleanup) -----------------------------------------

    async def push(self, user_ids: Iterable[int], entry: Entry) -> int:
        """Adds the entry to each user's timeline, trimming each to ``timeline_max``: one
        pipelined round trip for the batch. Returns how many timelines were written."""
        m = member(entry)
        users = list(user_ids)

        def queue(batch: redisio.Batch) -> None:
            for user in users:
                batch.script(self._add_and_trim, [timeline_key(user), timeline_meta(user)], [self.timeline_max, "", m])

        if users:
            await redisio.pipelined(self.redis, queue, "a batch of timeline writes", ADD_AND_TRIM)
        return len(users)

    async def remove(self, user_ids: Iterable[int], entry: Entry) -> int:
        m = member(entry)
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for user in user_ids:
            pipe.zrem(timeline_key(user), m)
            n += 1
        if n:
            with failures("a batch of timeline removals"):
                await pipe.execute()
        return n

    async def drop(self, user_id: int, entries: Sequence[Entry]) -> None:
        """Removes entries from one user's timeline (deleted posts found while reading)."""
        if entries:
            with failures("a timeline removal"):
                await self.redis.zrem(timeline_key(user_id), *[member(e) for e in entries])

    async def pull_add(self, entry: Entry) -> None:
        with failures("a celebrity list write"):
            await self._add_and_trim(keys=[pull_key(entry.author_id), pull_meta(entry.author_id)],
                                     args=[self.celebrity_recent, "", member(entry)])

    async def pull_remove(self, entry: Entry) -> None:
        with failures("a celebrity list removal"):
            await self.redis.zrem(pull_key(entry.author_id), member(entry))

    async def backfill(self, user_id: int, entries: Sequence[Entry], floor: int | None) -> None:
        """Adds a followee's recent posts to a timeline and, when they were not all of that
        author's posts, raises the floor to ``floor`` (below it some of theirs are missing),
        in one step."""
        if not entries and floor is None:
            return
        with failures("a backfill"):
            await self._add_and_trim(keys=[timeline_key(user_id), timeline_meta(user_id)],
                                     args=[self.timeline_max, "" if floor is None else id_hex(floor),
                                           *[member(e) for e in entries]])


    async def drop_author(self, user_id: int, author_id: int) -> int:
        """Removes an unfollowed author's entries from a timeline (at most timeline_max
        members are scanned)."""
        key = timeline_key(user_id)
        suffix = f"{author_id:0{ID_HEX}x}".encode()
        with failures("an unfollow's cleanup"):
            members: list[bytes] = await self.redis.zrange(key, 0, -1)  # type: ignore[assignment]
            gone = [m for m in members if m.endswith(suffix)]
            if gone:
                await self.redis.zrem(key, *gone)
        return len(gone)

    # --- rebuilding after a loss ------------------------------------------------------

    async def rebuild(self, user_id: int, entries: Sequence[Entry], complete: bool) -> None:
        """Writes a timeline rebuilt from PostgreSQL (the newest ``timeline_max`` pushed
        posts of the user's followees and their own), merged with whatever fan-out wrote
        meanwhile, and marks it built."""
        key, meta = timeline_key(user_id), timeline_meta(user_id)
        floor = "" if complete or not entries else id_hex(min(e.media_id for e in entries))
        with failures("a timeline rebuild"):
            if entries or floor:
                await self._add_and_trim(keys=[key, meta], args=[self.timeline_max, floor,
                                                                 *[member(e) for e in entries]])
            await self.redis.hset(meta, BUILT, 1)

    async def rebuild_pull(self, author_id: int, entries: Sequence[Entry]) -> None:
        # When it holds celebrity_recent posts, it holds the newest only: the floor rises.
        floor = id_hex(min(e.media_id for e in entries)) if len(entries) >= self.celebrity_recent else ""
        with failures("a celebrity list rebuild"):
            if entries:
                await self._add_and_trim(keys=[pull_key(author_id), pull_meta(author_id)],
                                         args=[self.celebrity_recent, floor, *[member(e) for e in entries]])
            await self.redis.hset(pull_meta(author_id), BUILT, 1)

    # --- reads ------------------------------------------------------------------------

    async def windows(self, keys: Sequence[tuple[str, str]], cursor: int, n: int) -> list[Window]:
        """For each (key, its hash): its ``n`` newest entries with id < ``cursor``, and its
        floor (every trim and every short backfill recorded it). One pipelined round trip."""
        batch = redisio.Batch(self.redis)
        for key, meta in keys:
            batch.add("ZREVRANGEBYLEX", key, below(cursor), "-", "LIMIT", 0, n)
            batch.add("HGET", meta, FLOOR)
        with failures("a feed page"):
            replies = await batch.execute()
        out = []
        for k in range(len(keys)):
            members, stored = replies[2 * k], replies[2 * k + 1]
            out.append(Window([entry_of(m) for m in members], int(stored, 16) if stored else 0))
        return out

    # --- what a read needs first, in two round trips -------------------------------

    async def read_state(self, user_id: int) -> tuple[int, int, bool]:
        """(the user's follow version, the pull epoch, whether the timeline is built)."""
        batch = redisio.Batch(self.redis)
        batch.add("GET", follow_version_key(user_id))
        batch.add("GET", PULL_EPOCH)
        batch.add("HEXISTS", timeline_meta(user_id), BUILT)
        with failures("a feed's state"):
            version, epoch, built = await batch.execute()
        return int(version or 0), int(epoch or 0), bool(built)

    async def cached_sets(self, user_id: int, version: int, epoch: int) -> tuple[set[int] | None, list[int] | None]:
        """(whom the user follows, the followed pull authors), each None unless cached at
        this version (and epoch)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(timeline_meta(user_id), b"v")
        pipe.smembers(follows_key(user_id))
        pipe.get(pull_set_key(user_id))
        with failures("a feed's cached sets"):
            tagged, members, pulls = await pipe.execute()
        follows = None
        if tagged is not None and int(tagged) == version and FOLLOWS_BUILT in members:
            follows = {int(m) for m in members if m != FOLLOWS_BUILT}
        return follows, _pull_set(pulls, epoch, version)

    async def pulls_built(self, author_ids: Sequence[int]) -> list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for author in author_ids:
            pipe.hexists(pull_meta(author), BUILT)
        with failures("celebrity lists' state"):
            return [bool(b) for b in await pipe.execute()]

    # --- the caches beside the timelines --------------------------------------------

    async def bump_follow_version(self, user_id: int) -> None:
        """After a follow or unfollow commits: the user's cached follow sets are stale. A
        random version, not a counter: after Redis lost the key, a new one cannot land on a
        version some surviving cache was tagged with."""
        with failures("a follow version"):
            await self.redis.set(follow_version_key(user_id), secrets.randbits(62))

    async def cache_follows(self, user_id: int, version: int, followees: Iterable[int]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            key = follows_key(user_id)
            pipe.delete(key)
            pipe.sadd(key, FOLLOWS_BUILT, *[str(f).encode() for f in followees])
            pipe.expire(key, FOLLOWS_TTL_S)  # bounds how long a failed version bump can go unnoticed
            pipe.hset(timeline_meta(user_id), b"v", version)
            with failures("a follow set"):
                await pipe.execute()

    async def bump_pull_epoch(self) -> None:
        with failures("the pull epoch"):
            await self.redis.incr(PULL_EPOCH)

    async def cache_pull_set(self, user_id: int, epoch: int, version: int, authors: Iterable[int]) -> None:
        # The epoch makes it stale when any author's pull posts appear or go; the expiry
        # bounds how long a bump that failed (Redis away at that moment) can go unnoticed.
        with failures("a pull set"):
            await self.redis.set(pull_set_key(user_id), f"{epoch}:{version}:{','.join(map(str, authors))}",
                                 ex=PULL_SET_TTL_S)

    async def mark_deleted(self, media_id: int) -> None:
        with failures("a deletion mark"):
            await self.redis.zadd(DELETED, {id_hex(media_id): time.time()})

    async def prune_deleted(self, older_than_s: float) -> int:
        """Forgets deletion marks older than ``older_than_s`` (every cleanup long done)."""
        with failures("deletion marks"):
            return int(await self.redis.zremrangebyscore(DELETED, "-inf", time.time() - older_than_s))

    async def deleted_among(self, entries: Sequence[Entry]) -> set[int]:
        if not entries:
            return set()
        with failures("deletion marks"):
            scores = await self.redis.zmscore(DELETED, [id_hex(e.media_id) for e in entries])
        return {e.media_id for e, s in zip(entries, scores, strict=True) if s is not None}


def _pull_set(raw: bytes | None, epoch: int, version: int) -> list[int] | None:
    """The authors of a cached pull set, if it was cached at ``epoch`` and ``version``."""
    if raw is None:
        return None
    e, v, ids = raw.decode().split(":", 2)
    if int(e) != epoch or int(v) != version:
        return None
    return [int(a) for a in ids.split(",") if a]
