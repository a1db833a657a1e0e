"""Follow and unfollow: the edge in PostgreSQL first, then the follower's Redis keys.

Follow backfills the follower's timeline with the followee's recent pushed posts (a
celebrity's other posts are merged in at read time, so nothing more is needed for them);
unfollow removes the followee's entries from it. Either sets a new follow version for the
follower after the commit, which makes their cached follow set and pull set stale at once.
"""

from __future__ import annotations

from feedsvc.errors import BadFeedRequest, FollowSelf
from feedsvc.records import Records
from feedsvc.timelines import Timelines


def check_pair(follower_id: int, followee_id: int) -> None:
    if follower_id < 0 or followee_id < 0:
        raise BadFeedRequest(f"user ids are non-negative, got follower {follower_id} and followee {followee_id}")
    if follower_id == followee_id:
        raise FollowSelf(f"user {follower_id} cannot follow themselves (their own posts are in their feed already)")


class Follows:
    def __init__(self, records: Records, timelines: Timelines, *, backfill_posts: int) -> None:
        self._records = records
        self._timelines = timelines
        self._backfill = backfill_posts

    async def follow(self, follower_id: int, followee_id: int) -> bool:
        """Every step after the commit is idempotent and runs again when the follow is
        retried (a step that failed the first time, Redis away, is made good by the retry)."""
        check_pair(follower_id, followee_id)
        created = await self._records.follow(follower_id, followee_id)
        await self._timelines.bump_follow_version(follower_id)
        if created:
            # Entries a fan-out wrote after an earlier unfollow's cleanup: the backfill is the truth.
            await self._timelines.drop_author(follower_id, followee_id)
        recent = await self._records.author_posts(followee_id, before=0, limit=self._backfill + 1, pushed=True)
        kept = recent[:self._backfill]
        floor = None
        if len(recent) > self._backfill:  # older posts of theirs exist: below this, PostgreSQL has them
            floor = kept[-1].media_id if kept else recent[0].media_id + 1
        await self._timelines.backfill(follower_id, kept, floor)
        gone = await self._records.deleted_among([e.media_id for e in kept])
        if gone:  # deleted between the read and the write
            await self._timelines.drop(follower_id, [e for e in kept if e.media_id in gone])
        return created

    async def unfollow(self, follower_id: int, followee_id: int) -> bool:
        check_pair(follower_id, followee_id)
        removed = await self._records.unfollow(follower_id, followee_id)
        await self._timelines.bump_follow_version(follower_id)
        await self._timelines.drop_author(follower_id, followee_id)  # again on a retry: idempotent
        return removed
