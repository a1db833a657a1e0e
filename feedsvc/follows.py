"""Follow and unfollow: the edge in PostgreSQL first (with the intent of its follow-up, in
the same transaction), then the follower's Redis keys.

The follow-up brings the edge's copy on the followee's shard (``Records.settle_edge``) and
the follower's Redis keys in line with the edge as it is now: a new
follow version (their cached follow set and pull set are stale at once), the followee's
entries dropped from the timeline, and, when they follow, the followee's recent pushed
posts backfilled (a celebrity's other posts are merged in at read time, so nothing more is
needed for them). The request does it at once and removes the intent; when Redis is away
(or the process dies first) the change still stands, the request is answered, and the
sweeper (``feedsvc.intents``) finishes the follow-up from the intent once Redis is back,
whether or not the client retries.
"""

from __future__ import annotations

import logging

from feedsvc.errors import BadFeedRequest, FollowSelf
from feedsvc.model import Intent
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat.errors import TrenchcoatError

log = logging.getLogger(__name__)


def check_pair(follower_id: int, followee_id: int) -> None:
    if follower_id < 0 or followee_id < 0:
        raise BadFeedRequest(f"user ids are non-negative, got follower {follower_id} and followee {followee_id}")
    if follower_id == followee_id:
        raise FollowSelf(f"user {follower_id} cannot follow themselves (their own posts are in their feed already)")


class Follows:
    def __init__(self, records: Records, timelines: Timelines, *, backfill_posts: int, hold_s: float) -> None:
        self._records = records
        self._timelines = timelines
        self._backfill = backfill_posts
        self._hold_s = hold_s
        """How long the sweeper leaves a request to finish its own follow-up."""

    async def follow(self, follower_id: int, followee_id: int) -> bool:
        """True when the edge is new. A follow already there runs its follow-up again (that
        is how a client's retry heals what an earlier attempt left undone)."""
        check_pair(follower_id, followee_id)
        intent = await self._records.follow(follower_id, followee_id, hold_s=self._hold_s)
        await self._follow_up(follower_id, followee_id, intent)
        return intent is not None

    async def unfollow(self, follower_id: int, followee_id: int) -> bool:
        check_pair(follower_id, followee_id)
        intent = await self._records.unfollow(follower_id, followee_id, hold_s=self._hold_s)
        await self._follow_up(follower_id, followee_id, intent)
        return intent is not None

    async def settle(self, follower_id: int, followee_id: int) -> None:
        """The follow-up of an edge that changed, by the request or the sweeper: the
        follower's keys brought in line with the edge as it is now (read again: a follow
        and an unfollow racing each other both end in what PostgreSQL holds)."""
        following = await self._records.settle_edge(follower_id, followee_id)  # the followee's shard too
        await self.catch_up(follower_id, followee_id, following=following)

    async def _follow_up(self, follower_id: int, followee_id: int, intent: Intent | None) -> None:
        try:
            await self.settle(follower_id, followee_id)
        except TrenchcoatError as exc:
            if intent is None:
                raise  # nothing was committed now: the client's retry is what heals it
            log.warning("the follow-up of %d -> %d is left to the sweeper: %s", follower_id, followee_id, exc)
            await self._records.hand_over_intent(intent, str(exc))
            return
        if intent is not None:
            await self._records.finish_intent_quietly(intent)

    async def catch_up(self, follower_id: int, followee_id: int, *, following: bool) -> None:
        """The follower's Redis keys brought in line with the edge: a new follow version;
        the followee's entries dropped (the edge is gone, or a fan-out wrote some after an
        earlier unfollow's cleanup); while they follow, their recent pushed posts backfilled
        (the backfill is the truth, PostgreSQL below its floor)."""
        await self._timelines.bump_follow_version(follower_id)
        await self._timelines.drop_author(follower_id, followee_id)
        if not following:
            return
        recent = await self._records.author_posts(followee_id, before=0, limit=self._backfill + 1, pushed=True)
        kept = recent[:self._backfill]
        floor = None
        if len(recent) > self._backfill:  # older posts of theirs exist: below this, PostgreSQL has them
            floor = kept[-1].media_id if kept else recent[0].media_id + 1
        await self._timelines.backfill(follower_id, kept, floor)
        gone = await self._records.deleted_among([e.media_id for e in kept])
        if gone:  # deleted between the read and the write
            await self._timelines.drop(follower_id, [e for e in kept if e.media_id in gone])

