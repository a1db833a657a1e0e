"""The FeedService servicer: protobuf in, a call on posts, follows or feeds, protobuf out."""

from __future__ import annotations

import time
from typing import Any

from grpc.aio import ServicerContext

from feedsvc.errors import BadFeedRequest
from feedsvc.follows import Follows
from feedsvc.home import HomeFeeds
from feedsvc.hydrate import MetadataCache
from feedsvc.model import Entry, Page
from feedsvc.posts import Posts
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat import ids
from trenchcoat.v1 import feed_pb2, feed_pb2_grpc, media_pb2

SERVICE_NAME = "trenchcoat.v1.FeedService"
FUTURE_SLACK_MS = 3_600_000
"""A cursor may be at most this far in the future (clocks differ a little); beyond, it is
not a position any feed handed out."""

_STATES = {"active": media_pb2.MEDIA_STATE_ACTIVE, "deleted": media_pb2.MEDIA_STATE_DELETED}
_TIERS = {"hot": media_pb2.TIER_HOT, "warm": media_pb2.TIER_WARM}
_RENDITIONS_STATES = {"pending": media_pb2.RENDITIONS_PENDING, "done": media_pb2.RENDITIONS_DONE,
                      "failed": media_pb2.RENDITIONS_FAILED}


def entry_pb(entry: Entry) -> feed_pb2.FeedEntry:
    return feed_pb2.FeedEntry(media=media_pb2.MediaRef(media_id=entry.media_id), author_id=entry.author_id)


def media_info(facts: dict[str, Any]) -> media_pb2.MediaInfo:
    """MediaInfo from the facts the metadata cache keeps (trenchcoat.clients.media.Media)."""
    return media_pb2.MediaInfo(
        ref=media_pb2.MediaRef(media_id=facts["media_id"]), owner_id=facts["owner_id"],
        content_type=facts["content_type"], size_bytes=facts["size_bytes"], width=facts.get("width", 0),
        height=facts.get("height", 0), created_unix_ms=facts["created_unix_ms"],
        state=_STATES.get(facts["state"], media_pb2.MEDIA_STATE_UNSPECIFIED),
        tier=_TIERS.get(facts["tier"], media_pb2.TIER_UNSPECIFIED), url=facts["url"],
        renditions=[media_pb2.RenditionInfo(**r) for r in facts.get("renditions", ())],
        renditions_state=_RENDITIONS_STATES.get(facts.get("renditions_state", ""),
                                                media_pb2.RENDITIONS_STATE_UNSPECIFIED),
        renditions_error=facts.get("renditions_error", ""))


class FeedServicer(feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, posts: Posts, follows: Follows, home: HomeFeeds, records: Records, timelines: Timelines,
                 metadata: MetadataCache, *, page_size: int, max_page_size: int) -> None:
        self._posts = posts
        self._follows = follows
        self._home = home
        self._records = records
        self._timelines = timelines
        self._metadata = metadata
        self._page_size = page_size
        self._max_page = max_page_size

    async def Post(
        self, request: feed_pb2.PostRequest,
        context: ServicerContext[feed_pb2.PostRequest, feed_pb2.PostResponse],
    ) -> feed_pb2.PostResponse:
        entry = await self._posts.post(request.author_id, request.media.media_id, request.caption)
        return feed_pb2.PostResponse(entry=entry_pb(entry))

    async def DeletePost(
        self, request: feed_pb2.DeletePostRequest,
        context: ServicerContext[feed_pb2.DeletePostRequest, feed_pb2.DeletePostResponse],
    ) -> feed_pb2.DeletePostResponse:
        return feed_pb2.DeletePostResponse(deleted=await self._posts.delete(request.author_id, request.media.media_id))

    async def Follow(
        self, request: feed_pb2.FollowRequest,
        context: ServicerContext[feed_pb2.FollowRequest, feed_pb2.FollowResponse],
    ) -> feed_pb2.FollowResponse:
        return feed_pb2.FollowResponse(created=await self._follows.follow(request.follower_id, request.followee_id))

    async def Unfollow(
        self, request: feed_pb2.UnfollowRequest,
        context: ServicerContext[feed_pb2.UnfollowRequest, feed_pb2.UnfollowResponse],
    ) -> feed_pb2.UnfollowResponse:
        return feed_pb2.UnfollowResponse(removed=await self._follows.unfollow(request.follower_id,
                                                                              request.followee_id))

    async def GetHomeFeed(
        self, request: feed_pb2.GetHomeFeedRequest,
        context: ServicerContext[feed_pb2.GetHomeFeedRequest, feed_pb2.GetHomeFeedResponse],
    ) -> feed_pb2.GetHomeFeedResponse:
        limit = self._limit(request.user_id, request.cursor, request.limit)
        page = await self._home.page(request.user_id, request.cursor, limit)
        if not request.hydrate:
            return feed_pb2.GetHomeFeedResponse(entries=[entry_pb(e) for e in page.entries],
                                                next_cursor=page.next_cursor)
        found = await self._metadata.hydrate(page.entries)
        if found.gone:  # a deleted post: out of this page, and out of the timeline at once
            await self._timelines.drop(request.user_id, found.gone)
        gone = set(found.gone)
        return feed_pb2.GetHomeFeedResponse(
            entries=[entry_pb(e) for e in page.entries if e not in gone],
            hydrated=[feed_pb2.HydratedEntry(entry=entry_pb(h.entry), caption=h.caption, media=media_info(h.media))
                      for h in found.hydrated],
            unhydrated=[feed_pb2.UnhydratedEntry(entry=entry_pb(u.entry), reason=u.reason)
                        for u in found.unhydrated],
            next_cursor=page.next_cursor)

    async def GetUserFeed(
        self, request: feed_pb2.GetUserFeedRequest,
        context: ServicerContext[feed_pb2.GetUserFeedRequest, feed_pb2.GetUserFeedResponse],
    ) -> feed_pb2.GetUserFeedResponse:
        limit = self._limit(request.author_id, request.cursor, request.limit)
        entries = await self._records.author_posts(request.author_id, before=request.cursor, limit=limit + 1)
        page = Page(entries[:limit], entries[limit - 1].media_id if len(entries) > limit else 0)
        return feed_pb2.GetUserFeedResponse(entries=[entry_pb(e) for e in page.entries], next_cursor=page.next_cursor)

    def _limit(self, user_id: int, cursor: int, limit: int) -> int:
        if user_id < 0:
            raise BadFeedRequest(f"user ids are non-negative, got {user_id}")
        if limit > self._max_page:
            raise BadFeedRequest(f"a page has at most {self._max_page} entries, {limit} were asked for")
        if cursor and ids.split_id(cursor)[0] + ids.EPOCH_MS > _now_ms() + FUTURE_SLACK_MS:
            raise BadFeedRequest(f"cursor {cursor} is not a position in a feed (it lies in the future); "
                                 "pass 0 for the newest, or a next_cursor a page returned")
        return limit or self._page_size


def _now_ms() -> int:
    return int(time.time() * 1000)
