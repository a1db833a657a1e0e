"""Renditions, the router's side: storing what the transformer made, and making sure every
upload gets its jobs.

``RenditionWriter.put`` stores one rendition: its own needle (the media_id, its alternate
key, a cookie derived from the original's) on every replica of any writable volume, as an
upload is (``Uploader.place``), then recorded in ``renditions``. A second copy under the
same alternate key (a job run twice) is not recorded: the first one stays; the copy is the
same needle (same cookie, same bytes), so on the first one's volume it simply is the first
one, and on another volume it is journalled as a stray and flagged. A rendition of a media deleted meanwhile is journalled
the same way, and the caller hears NOT_FOUND.

``RenditionDuties`` (a background loop of every router) enqueues an upload's rendition
job on the transformer's stream right after the upload is acknowledged, off the request
path: the upload only appends to a bounded in-memory list, so Redis being slow or away
never slows or fails an upload. Every ``renditions_sweep_interval_s`` it also sweeps
PostgreSQL for uploads whose renditions have not finished ``renditions_sweep_after_s``
after they were made (the enqueue was dropped, Redis lost the stream) and enqueues their
jobs again (forced: the job's state in Redis may say queued for a job Redis lost).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging

from router import metrics
from router.deletes import DeleteJournal
from router.errors import MediaNotFound
from router.metadata import MediaState, MediaStore, RenditionRow
from router.upload import Uploader
from trenchcoat import media_facts, media_types, redisio
from trenchcoat.errors import InvalidArgument, TrenchcoatError
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.rendition_jobs import RenditionJob, RenditionQueue, kind_for
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


BACKLOG = 10_000
"""Uploads waiting to have their jobs enqueued; past it the oldest are dropped (the sweep
enqueues them later)."""
SWEEP_BATCH = 500


def rendition_cookie(media_id: int, cookie: int, alternate_key: int) -> int:
    """A rendition's cookie: derived from the original's secret cookie, so a job that runs
    twice writes the very same needle (a volume's index holds one needle per key and
    alternate key: a second copy there with another cookie would hide the first). Who can
    derive it holds the original's URL already."""
    digest = hashlib.blake2b(f"{media_id}:{alternate_key}".encode(), key=cookie.to_bytes(4, "big"),
                             digest_size=4).digest()
    return int.from_bytes(digest, "big")


class RenditionWriter:
    def __init__(self, uploader: Uploader, media: MediaStore, deletes: DeleteJournal,
                 feed_facts: redisio.Client | None = None) -> None:
        self._uploader = uploader
        self._media = media
        self._deletes = deletes
        self._feed_facts = feed_facts

    async def put(self, media_id: int, alternate_key: int, content_type: str, width: int, height: int,
                  data: bytes) -> tuple[RenditionRow, bool]:
        """Stores a rendition; returns the one recorded and whether it is this one."""
        if alternate_key == 0:
            raise InvalidArgument("alternate_key 0 is the original: a rendition needs another")
        if not data:
            raise InvalidArgument("a rendition carries no bytes")
        if len(data) > self._uploader.limits.max_bytes:
            raise InvalidArgument(f"a rendition of {len(data)} bytes is over the {self._uploader.limits.max_bytes} "
                                  f"an upload may carry")
        content_type = media_types.of_mime(content_type).mime
        row = await self._media.get(media_id)
        if row is None or row.state is not MediaState.ACTIVE:
            raise MediaNotFound(f"media {media_id} does not exist (deleted, or never uploaded)")
        needle = NeedleRef(logical_volume=row.logical_volume, key=media_id, alternate_key=alternate_key,
                           cookie=rendition_cookie(media_id, row.cookie, alternate_key))
        volume = await self._uploader.place(needle, data, content_type)
        rendition = RenditionRow(media_id=media_id, alternate_key=alternate_key, logical_volume=volume,
                                 cookie=needle.cookie, size_bytes=len(data), content_type=content_type,
                                 width=width, height=height)
        recorded = await self._media.record_rendition(rendition)
        if recorded is not None and recorded[1]:
            metrics.STORED.labels("new").inc()
            return recorded
        if recorded is not None and recorded[0].logical_volume == volume:
            # The same needle written again where the recorded one is (same key, alternate
            # key and cookie, and the same bytes: rendering is deterministic): nothing stray.
            metrics.STORED.labels("kept").inc()
            return recorded
        # Not recorded: this copy, on a volume of its own, is a stray nobody will be given
        # a URL for. (On the recorded one's volume it could not be flagged apart from it.)
        entry = await self._media.journal_stray(media_id, alternate_key, volume, needle.cookie)
        await self._deletes.carry_out(entry)
        if recorded is None:
            metrics.STORED.labels("gone").inc()
            raise MediaNotFound(f"media {media_id} was deleted while its rendition {alternate_key} was stored")
        metrics.STORED.labels("kept").inc()
        return recorded

    async def finish(self, media_id: int, recipe_version: int, failure: str, *, width: int = 0,
                     height: int = 0) -> bool:
        """Records the renditions finished (or failed) and the original's displayed size,
        then drops the feed's cached facts of the media, so feeds list the renditions at
        once. Unavailable when that drop failed (the record stands; the caller retries)."""
        recorded = await self._media.finish_renditions(media_id, recipe_version, failure, width=width,
                                                       height=height)
        if recorded and self._feed_facts is not None:
            await media_facts.drop(self._feed_facts, media_id)
        return recorded


class RenditionDuties(PeriodicWorker):
    def __init__(self, media: MediaStore, queue: RenditionQueue, *, recipe_version: int, sweep_after_s: float,
                 sweep_interval_s: float) -> None:
        super().__init__("rendition jobs", sweep_interval_s)
        self._media = media
        self._queue = queue
        self._version = recipe_version
        self._after_s = sweep_after_s
        self._waiting: collections.deque[RenditionJob] = collections.deque(maxlen=BACKLOG)
        self._next_sweep = 0.0

    def uploaded(self, media_id: int, content_type: str) -> None:
        """An upload was acknowledged: its job is enqueued soon (never on the request path)."""
        kind = kind_for(content_type)
        if kind is None:
            return
        self._waiting.append(RenditionJob(media_id, kind, self._version))
        self.wake()

    async def tick(self) -> None:
        """Enqueues the uploads waiting (woken by each); sweeps once an interval has passed
        since the last sweep (not on every wake: uploads would each cost a sweep)."""
        while self._waiting:
            job = self._waiting[0]
            await self._submit(job, "upload", force=False)
            self._waiting.popleft()
        now = asyncio.get_running_loop().time()
        if now >= self._next_sweep:
            self._next_sweep = now + self.interval_s
            await self.sweep()

    async def sweep(self) -> int:
        """Enqueues again the jobs of uploads whose renditions did not finish in time."""
        rows = await self._media.renditions_due(self._after_s, SWEEP_BATCH)
        swept = 0
        for row in rows:
            kind = kind_for(row.content_type)
            if kind is None:  # a type that gets no renditions: nothing will ever finish it
                await self._media.finish_renditions(row.media_id, self._version, "")
                continue
            await self._submit(RenditionJob(row.media_id, kind, self._version), "sweep", force=True)
            swept += 1
        if swept:
            log.info("enqueued again %d rendition jobs that had not finished", swept)
        return swept

    async def _submit(self, job: RenditionJob, cause: str, *, force: bool) -> None:
        try:
            _, new = await self._queue.submit(job, force=force)
        except TrenchcoatError:
            metrics.ENQUEUED.labels(cause, "failed").inc()
            raise
        metrics.ENQUEUED.labels(cause, "new" if new else "known").inc()
