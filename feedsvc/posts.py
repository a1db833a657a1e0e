"""Posting and deleting: the row in PostgreSQL, then one job on the fan-out queue; no
follower work on the request path.

A post must name media that exists, is active and was uploaded by its author (asked of
the router's ``MediaService.Stat``). Posting the same media_id again returns the first
post. Whether the post is pushed to followers' timelines or merged in at read time (its
author is a celebrity) is decided now, from the author's follower count, and recorded.
Deleting a post (its author only) marks the row, drops it from reads at once (the
``feed:deleted`` mark and the metadata cache), enqueues its removal from every timeline,
and deletes the media.
"""

from __future__ import annotations

import logging

from feedsvc.errors import (
    BadFeedRequest,
    MediaMissing,
    NotTheAuthor,
    PostDeleted,
    PostMissing,
)
from feedsvc.fanout import REMOVE, SPREAD, FanoutQueue, Job
from feedsvc.hydrate import MetadataCache
from feedsvc.media import Routers
from feedsvc.model import Entry, PostState
from feedsvc.records import Records
from feedsvc.timelines import Timelines
from trenchcoat.errors import NotFound, TrenchcoatError, Unavailable

log = logging.getLogger(__name__)

MAX_CAPTION = 2200
"""Characters (Unicode code points) a caption may have."""


class Posts:
    def __init__(self, records: Records, timelines: Timelines, queue: FanoutQueue, media: Routers,
                 metadata: MetadataCache, *, celebrity_threshold: int) -> None:
        self._records = records
        self._timelines = timelines
        self._queue = queue
        self._media = media
        self._metadata = metadata
        self.celebrity_threshold = celebrity_threshold

    async def post(self, author_id: int, media_id: int, caption: str) -> Entry:
        if author_id < 0:
            raise BadFeedRequest(f"author_id must be >= 0, got {author_id}")
        if not media_id:
            raise BadFeedRequest("media.media_id is required: the id MediaService.Upload returned")
        if len(caption) > MAX_CAPTION:
            raise BadFeedRequest(f"a caption has at most {MAX_CAPTION} characters, this one {len(caption)}")
        try:
            media = await self._media.stat(media_id)
        except NotFound:
            raise MediaMissing(f"media {media_id} does not exist: upload it first (MediaService.Upload)") from None
        if media.state != "active":
            raise MediaMissing(f"media {media_id} was deleted")
        if media.owner_id != author_id:
            raise NotTheAuthor(f"media {media_id} was uploaded by user {media.owner_id}, not {author_id}")
        change = await self._records.create_post(media_id, author_id, caption, self.celebrity_threshold)
        if not change.changed:
            if change.post.state is PostState.DELETED:
                raise PostDeleted(f"the post of media {media_id} was deleted; upload the photo again to post it")
            return change.post.entry  # the same post again: nothing more to do
        if change.pull_author_changed:
            await self._best_effort("bump the pull epoch", self._timelines.bump_pull_epoch())
        await self._best_effort("enqueue the fan-out", self._queue.add(Job(media_id, SPREAD)))
        return change.post.entry

    async def delete(self, author_id: int, media_id: int) -> bool:
        """Deletes the post and its media; False when it was deleted already."""
        if author_id < 0:
            raise BadFeedRequest(f"author_id must be >= 0, got {author_id}")
        post = await self._records.post(media_id)
        if post is None:
            raise PostMissing(f"there is no post of media {media_id}")
        if post.author_id != author_id:
            raise NotTheAuthor(f"the post of media {media_id} is user {post.author_id}'s, not {author_id}'s")
        change = await self._records.delete_post(media_id)
        if change is None:
            raise PostMissing(f"there is no post of media {media_id}")
        if change.pull_author_changed:
            await self._best_effort("bump the pull epoch", self._timelines.bump_pull_epoch())
        # Done again when the delete is retried (each step is idempotent), so a step that
        # failed the first time (Redis away) is made good by the client's retry: reads drop
        # the post from now on, and the job removes it from every timeline.
        await self._timelines.mark_deleted(media_id)
        await self._metadata.forget(media_id)
        await self._best_effort("enqueue the removal", self._queue.add(Job(media_id, REMOVE)))
        try:
            await self._media.delete(media_id)
        except NotFound:
            pass  # deleted already
        except TrenchcoatError as exc:
            raise Unavailable(f"the post of media {media_id} is deleted, but the media not yet ({exc}); "
                              "retry the delete") from None
        return change.changed

    @staticmethod
    async def _best_effort(what: str, step) -> None:
        """A step the sweeper (or the next read) makes good if it fails now."""
        try:
            await step
        except TrenchcoatError as exc:
            log.warning("could not %s (the sweeper will): %s", what, exc)
