"""Posting and deleting: the row in PostgreSQL, then one job on the fan-out queue; no
follower work on the request path.

A post must name media that exists, is active and was uploaded by its author (asked of
the router's ``MediaService.Stat``). Posting the same media_id again returns the first
post. Whether the post is pushed to followers' timelines or merged in at read time (its
author is a celebrity) is decided now, from the author's follower count, and recorded.
Deleting a post (its author only) marks the row and records the intent of its follow-up
in the same transaction, then follows up: drops it from reads at once (the ``feed:deleted``
mark and the metadata cache), enqueues its removal from every timeline (the row's fan-out
duty, which the fan-out sweeper finishes if the job is lost), and deletes the media. When
Redis or the router is away, the delete still stands and is answered; the intent sweeper
(``feedsvc.intents``) finishes the follow-up once they are back, whether or not the client
retries.
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
NUL = "\x00"
"""The one character PostgreSQL's text cannot hold (in a UTF-8 database)."""


class Posts:
    def __init__(self, records: Records, timelines: Timelines, queue: FanoutQueue, media: Routers,
                 metadata: MetadataCache, *, celebrity_threshold: int, hold_s: float) -> None:
        self._records = records
        self._timelines = timelines
        self._queue = queue
        self._media = media
        self._metadata = metadata
        self.celebrity_threshold = celebrity_threshold
        self._hold_s = hold_s
        """How long the sweeper leaves a request to finish its own follow-up."""

    async def post(self, author_id: int, media_id: int, caption: str) -> Entry:
        if author_id < 0:
            raise BadFeedRequest(f"author_id must be >= 0, got {author_id}")
        if not media_id:
            raise BadFeedRequest("media.media_id is required: the id MediaService.Upload returned")
        if len(caption) > MAX_CAPTION:
            raise BadFeedRequest(f"a caption has at most {MAX_CAPTION} characters, this one {len(caption)}")
        if NUL in caption:
            raise BadFeedRequest(f"a caption cannot hold the NUL character (U+0000; found at character "
                                 f"{caption.index(NUL)}): remove it")
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
        """Deletes the post and its media; False when it was deleted already (its follow-up
        then runs again: that is how a client's retry heals what an earlier one left)."""
        if author_id < 0:
            raise BadFeedRequest(f"author_id must be >= 0, got {author_id}")
        if not media_id:
            raise BadFeedRequest("media.media_id is required: the id of the post to delete")
        post = await self._records.post(media_id)
        if post is None:
            raise PostMissing(f"there is no post of media {media_id}")
        if post.author_id != author_id:
            raise NotTheAuthor(f"the post of media {media_id} is user {post.author_id}'s, not {author_id}'s")
        change = await self._records.delete_post(media_id, hold_s=self._hold_s)
        if change is None:
            raise PostMissing(f"there is no post of media {media_id}")
        if change.pull_author_changed:
            await self._best_effort("bump the pull epoch", self._timelines.bump_pull_epoch())
        try:
            await self.settle_delete(media_id)
        except TrenchcoatError as exc:
            if change.intent is None:
                raise  # nothing was committed now: the client's retry is what heals it
            log.warning("the follow-up of deleting post %d is left to the sweeper: %s", media_id, exc)
            await self._records.hand_over_intent(change.intent, str(exc))
            return True
        if change.intent is not None:
            await self._records.finish_intent_quietly(change.intent)
        return change.changed

    async def settle_delete(self, media_id: int) -> None:
        """A deleted post's follow-up (idempotent): reads drop it from now on (the deletion
        mark, the metadata cache), its removal from every timeline is enqueued (the row's
        fan-out duty: the fan-out sweeper enqueues it again if this job is lost), and its
        media is deleted. Raises Unavailable naming what could not be done."""
        await self._timelines.mark_deleted(media_id)
        await self._metadata.forget(media_id)
        await self._best_effort("enqueue the removal", self._queue.add(Job(media_id, REMOVE)))
        try:
            await self._media.delete(media_id)
        except NotFound:
            pass  # deleted already
        except TrenchcoatError as exc:
            raise Unavailable(f"the post of media {media_id} is deleted, but the media not yet ({exc})") from None

    @staticmethod
    async def _best_effort(what: str, step) -> None:
        """A step the sweeper (or the next read) makes good if it fails now."""
        try:
            await step
        except TrenchcoatError as exc:
            log.warning("could not %s (the sweeper will): %s", what, exc)
