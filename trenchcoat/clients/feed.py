"""The one client of the ``FeedService``: post, delete a post, follow, unfollow, read home
and user feeds (hydrated or not). Used by the ``trenchcoat`` command, the demo, the
benchmarks and the tests. Results are plain values; failures typed errors. Protobuf stays
in this module."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat import rpc, tokens
from trenchcoat.clients.media import Media, media
from trenchcoat.v1 import feed_pb2, feed_pb2_grpc, media_pb2


@dataclass(frozen=True, slots=True, order=True)
class FeedEntry:
    """One feed item; its time is inside the media_id."""

    media_id: int
    author_id: int


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A hydrated feed item."""

    entry: FeedEntry
    caption: str
    media: Media


@dataclass(frozen=True, slots=True)
class FeedPage:
    entries: list[FeedEntry]
    next_cursor: int
    """Pass it as the next page's cursor; 0 when there is no more."""
    items: list[FeedItem] | None = None
    """With ``hydrate``: the entries with their facts (deleted ones left out)."""
    unhydrated: list[tuple[FeedEntry, str]] | None = None
    """With ``hydrate``: entries whose facts could not be had now, and why."""


def _entry(e: feed_pb2.FeedEntry) -> FeedEntry:
    return FeedEntry(e.media.media_id, e.author_id)


class FeedClient:
    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float = 30.0) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s
        self._remote = f"feed {address}"

    def _stub(self) -> feed_pb2_grpc.FeedServiceStub:
        return self._pool.stub(feed_pb2_grpc.FeedServiceStub, self.address)

    async def _unary(self, method: str, request: object, user: int = 0, token: str | None = None) -> object:
        """``user``: whom the call acts for; its token is ``token`` or the process's
        (``trenchcoat.tokens.use``)."""
        return await rpc.unary(getattr(self._stub(), method), request, remote=self._remote, timeout=self.timeout_s,
                               metadata=tokens.metadata_for(user, token))

    async def post(self, author_id: int, media_id: int, caption: str = "", *, token: str | None = None) -> FeedEntry:
        reply = await self._unary("Post", feed_pb2.PostRequest(
            author_id=author_id, media=media_pb2.MediaRef(media_id=media_id), caption=caption), author_id, token)
        return _entry(reply.entry)  # type: ignore[attr-defined]

    async def delete_post(self, author_id: int, media_id: int, *, token: str | None = None) -> bool:
        reply = await self._unary("DeletePost", feed_pb2.DeletePostRequest(
            author_id=author_id, media=media_pb2.MediaRef(media_id=media_id)), author_id, token)
        return bool(reply.deleted)  # type: ignore[attr-defined]

    async def follow(self, follower_id: int, followee_id: int, *, token: str | None = None) -> bool:
        reply = await self._unary("Follow", feed_pb2.FollowRequest(follower_id=follower_id, followee_id=followee_id),
                                  follower_id, token)
        return bool(reply.created)  # type: ignore[attr-defined]

    async def unfollow(self, follower_id: int, followee_id: int, *, token: str | None = None) -> bool:
        reply = await self._unary("Unfollow", feed_pb2.UnfollowRequest(follower_id=follower_id,
                                                                       followee_id=followee_id), follower_id, token)
        return bool(reply.removed)  # type: ignore[attr-defined]

    async def home(self, user_id: int, *, cursor: int = 0, limit: int = 0, hydrate: bool = False,
                   token: str | None = None) -> FeedPage:
        reply = await self._unary("GetHomeFeed", feed_pb2.GetHomeFeedRequest(
            user_id=user_id, cursor=cursor, limit=limit, hydrate=hydrate), user_id, token)
        items = unhydrated = None
        if hydrate:
            items = [FeedItem(_entry(h.entry), h.caption, media(h.media))
                     for h in reply.hydrated]  # type: ignore[attr-defined]
            unhydrated = [(_entry(u.entry), u.reason) for u in reply.unhydrated]  # type: ignore[attr-defined]
        return FeedPage([_entry(e) for e in reply.entries], reply.next_cursor,  # type: ignore[attr-defined]
                        items, unhydrated)

    async def user(self, author_id: int, *, cursor: int = 0, limit: int = 0) -> FeedPage:
        reply = await self._unary("GetUserFeed", feed_pb2.GetUserFeedRequest(
            author_id=author_id, cursor=cursor, limit=limit))
        return FeedPage([_entry(e) for e in reply.entries], reply.next_cursor)  # type: ignore[attr-defined]
