"""What a rendition job does (the handler ``trenchcoat.jobqueue.JobRunner`` runs).

An ``image`` job reads the original through a router (``MediaService.Read``: the cache,
then a store), renders every configured size in one decode (``transformer.images``, in a
thread of the ``render`` pool so the event loop keeps serving), stores each size the
media does not have yet through the router (``PutRendition``: durable on every replica,
then recorded), and records the renditions finished (``FinishRenditions``).

Idempotent at every step: a job that runs again, or twice at once (a worker presumed dead
that was only slow), skips sizes already recorded, and a size stored twice is recorded
once (the router keeps the first and drops the copy); the bytes are the same either way,
since rendering is a pure function of the source and the recipe. A media deleted before or
during the job ends it quietly: there is nothing left to render. A source that can never
render (``UnrenderableSource``) fails for good at once: the job is dead-lettered with the
decoder's reason, and the upload's renditions are recorded failed with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from transformer import images, metrics
from transformer.errors import UnrenderableSource
from trenchcoat import ids
from trenchcoat.errors import NotFound, TrenchcoatError, Unavailable
from trenchcoat.jobqueue import Delivery
from trenchcoat.media_client import MediaClient
from trenchcoat.rendition_jobs import IMAGE, JobState, RenditionJob, RenditionQueue

log = logging.getLogger(__name__)


class RenditionJobs:
    def __init__(self, queue: RenditionQueue, media: MediaClient, specs: tuple[images.ImageSpec, ...], *,
                 max_pixels: int, max_source_bytes: int, quality: int, threads: int) -> None:
        self._queue = queue
        self._media = media
        self._specs = specs
        self._max_pixels = max_pixels
        self._max_source_bytes = max_source_bytes
        self._quality = quality
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def kind(self, delivery: Delivery) -> str:
        return RenditionJob.from_fields(delivery.fields).kind

    def permanent(self, exc: BaseException) -> bool:
        return isinstance(exc, UnrenderableSource)

    def outcome(self, kind: str, outcome: str) -> None:
        metrics.JOBS.labels(kind, outcome).inc()

    async def dead(self, delivery: Delivery, reason: str) -> None:
        """Records the job dead, and the upload's renditions failed with the reason (the
        router's sweeper then leaves it to an operator)."""
        job = RenditionJob.from_fields(delivery.fields)
        await self._queue.set_state(job, JobState.DEAD, attempts=delivery.attempt + 1, error=reason)
        try:
            await self._media.finish_renditions(job.media_id, job.recipe_version, reason)
        except NotFound:
            pass  # deleted meanwhile: nothing to record

    async def run(self, delivery: Delivery) -> None:
        job = RenditionJob.from_fields(delivery.fields)
        await self._queue.set_state(job, JobState.RUNNING, attempts=delivery.attempt)
        metrics.IN_FLIGHT.inc()
        try:
            await self._run(job)
        except Exception as exc:
            reason = "source" if isinstance(exc, UnrenderableSource) else (
                "unavailable" if isinstance(exc, Unavailable) else "other")
            metrics.FAILURES.labels(job.kind, reason).inc()
            why = str(exc) if isinstance(exc, TrenchcoatError) else f"{type(exc).__name__}: {exc}"
            await self._queue.set_state(job, JobState.QUEUED, attempts=delivery.attempt + 1, error=why)
            raise
        finally:
            metrics.IN_FLIGHT.dec()
        await self._queue.set_state(job, JobState.DONE, attempts=delivery.attempt)

    async def _run(self, job: RenditionJob) -> None:
        if job.kind != IMAGE:
            raise UnrenderableSource(f"this transformer renders no {job.kind!r} jobs")
        try:
            info, source = await self._media.read(job.media_id, internal=True)
        except NotFound:
            log.info("rendition job %s: the media is gone (deleted); nothing to render", job.job_id)
            return
        if len(source) > self._max_source_bytes:
            raise UnrenderableSource(f"the source is {len(source)} bytes, over the {self._max_source_bytes} a job "
                                     f"reads (transformer.max_source_bytes)")
        have = {r.alternate_key for r in info.renditions}
        if all(spec.alternate_key in have for spec in self._specs):
            rendered: list[images.Rendered] = []
        else:
            began = time.perf_counter()
            loop = asyncio.get_running_loop()
            rendered = await loop.run_in_executor(
                self._pool, lambda: images.render(source, self._specs, max_pixels=self._max_pixels,
                                                  quality=self._quality))
            metrics.RENDER_SECONDS.labels(job.kind).observe(time.perf_counter() - began)
        for out in rendered:
            if out.alternate_key in have:
                continue
            try:
                _, created = await self._media.put_rendition(job.media_id, out.alternate_key,
                                                             content_type=out.content_type, width=out.width,
                                                             height=out.height, data=out.data)
            except NotFound:
                log.info("rendition job %s: the media was deleted while it ran", job.job_id)
                return
            metrics.RENDITIONS.labels(job.kind, "new" if created else "kept").inc()
            log.info("rendition %d of %d stored (%dx%d, %d bytes)", out.alternate_key, job.media_id, out.width,
                     out.height, len(out.data))
        try:
            recorded = await self._media.finish_renditions(job.media_id, job.recipe_version)
        except NotFound:
            return
        if recorded:
            metrics.LAG.labels(job.kind).observe(max(0.0, time.time() - ids.unix_ms(job.media_id) / 1000))
