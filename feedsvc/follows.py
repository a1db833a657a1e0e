"""Follow and unfollow: the edge in PostgreSQL first, then the follower's Redis keys.

Follow backfills the follower's timeline with the followee's recent pushed posts (a
celebrity's other posts are merged in at read time, so nothing more is needed for them);
unfollow removes the followee's entries from it. Either bumps the follower's follow
version after the commit, which makes their cached follow set and pull set stale at once.
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
        check_pair(follower_id, followee_id)
        created = await self._records.follow(follower_id, followee_id)
        await self._timelines.bump_follow_version(follower_id)
        if created:
            recent = await self._records.author_posts(followee_id, before=0, limit=self._backfill + 1, pushed=True)
            kept = recent[:self._backfill]
            if kept:
                await self._timelines.backfill(follower_id, kept, complete=len(recent) <= self._backfill)
            elif recent:  # nothing backfilled (backfill_posts = 0): all of theirs come from PostgreSQL
                await self._timelines.raise_floor(follower_id, recent[0].media_id + 1)
        return created

    async def unfollow(self, follower_id: int, followee_id: int) -> bool:
        check_pair(follower_id, followee_id)
        removed = await self._records.unfollow(follower_id, followee_id)
        await self._timelines.bump_follow_version(follower_id)
        if removed:
            await self._timelines.drop_author(follower_id, followee_id)
        return removed
