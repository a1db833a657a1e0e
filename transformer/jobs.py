"""What a rendition job does (the handler ``trenchcoat.jobqueue.JobRunner`` runs).

A ``video`` job makes the poster and the HLS ladder (``transformer.video``), rung by
rung, publishing a master playlist of the rungs so far after each.

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

A failure of a dependency (a router or Redis away, restarting or frozen: ``Unavailable``,
``DeadlineExceeded``; overloaded: ``ResourceExhausted``) is transient: over mutual TLS it
comes within a fraction of a second, so the job is retried with backoff for
``transformer.retry_budget_s`` from its first failed attempt without spending
``max_attempts``, which only the other failures (a bug, a refusal) count. The dead
letter's reason and the job's state say which ran out, and so do the upload's renditions
when the router can be told; a router away past the budget leaves the upload pending, and
its sweep submits the job afresh once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from transformer import images, metrics, video
from transformer.errors import UnrenderableSource
from trenchcoat import ids
from trenchcoat import rendition_keys as keys
from trenchcoat.clients.media import MediaClient, Rendition
from trenchcoat.errors import NotFound, ResourceExhausted, TrenchcoatError, Unavailable
from trenchcoat.jobqueue import Delivery, Failure
from trenchcoat.rendition_jobs import (
    IMAGE,
    VIDEO,
    JobState,
    RenditionJob,
    RenditionQueue,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

TRANSIENT = (Unavailable, ResourceExhausted)
"""Failures of a dependency away, slow (``DeadlineExceeded``, ``Cancelled``: kinds of
``Unavailable``) or overloaded, that pass when it comes back: retried within the retry
budget, not counted toward ``max_attempts``."""


def failure_of(exc: BaseException) -> Failure:
    """What a job's attempt failing with ``exc`` says about the next ones: a source that
    can never render, never; a dependency away or overloaded, once it is back; anything
    else (a refusal, lost data, a bug) perhaps, up to ``max_attempts``."""
    if isinstance(exc, UnrenderableSource):
        return Failure.PERMANENT
    return Failure.TRANSIENT if isinstance(exc, TRANSIENT) else Failure.COUNTED


@dataclass(frozen=True, slots=True)
class VideoRecipe:
    rungs: tuple[int, ...]
    segment_s: float
    preset: str
    max_s: float


class RenditionJobs:
    def __init__(self, queue: RenditionQueue, media: MediaClient, specs: tuple[images.ImageSpec, ...],
                 recipe: VideoRecipe, *, max_pixels: int, max_source_bytes: int, quality: int, threads: int) -> None:
        self._queue = queue
        self._media = media
        self._specs = specs
        self._video = recipe
        self._max_pixels = max_pixels
        self._max_source_bytes = max_source_bytes
        self._quality = quality
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def kind(self, delivery: Delivery) -> str:
        return RenditionJob.from_fields(delivery.fields).kind

    def failure(self, exc: BaseException) -> Failure:
        return failure_of(exc)

    def outcome(self, kind: str, outcome: str) -> None:
        metrics.JOBS.labels(kind, outcome).inc()

    async def dead(self, delivery: Delivery, reason: str) -> None:
        """Records the job dead, and the upload's renditions failed with the reason (the
        router's sweeper then leaves it to an operator)."""
        job = RenditionJob.from_fields(delivery.fields)
        await self._queue.set_state(job, JobState.DEAD, attempts=delivery.failures + 1, error=reason)
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to record
            await self._media.finish_renditions(job.media_id, job.recipe_version, reason)

    async def run(self, delivery: Delivery) -> None:
        job = RenditionJob.from_fields(delivery.fields)
        # A job's attempts, as GetJobs shows them: every failed one, transient or counted.
        await self._queue.set_state(job, JobState.RUNNING, attempts=delivery.failures)
        metrics.IN_FLIGHT.inc()
        try:
            await self._run(job)
        except Exception as exc:
            metrics.FAILURES.labels(job.kind, failure_of(exc).value).inc()
            why = str(exc) if isinstance(exc, TrenchcoatError) else f"{type(exc).__name__}: {exc}"
            await self._queue.set_state(job, JobState.QUEUED, attempts=delivery.failures + 1, error=why)
            raise
        finally:
            metrics.IN_FLIGHT.dec()
        await self._queue.set_state(job, JobState.DONE, attempts=delivery.failures)

    async def _run(self, job: RenditionJob) -> None:
        try:
            info, source = await self._media.read(job.media_id, internal=True)
        except NotFound:
            log.info("rendition job %s: the media is gone (deleted); nothing to render", job.job_id)
            return
        if len(source) > self._max_source_bytes:
            raise UnrenderableSource(f"the source is {len(source)} bytes, over the {self._max_source_bytes} a job "
                                     f"reads (transformer.max_source_bytes)")
        have = {r.alternate_key: r for r in info.renditions}
        try:
            if job.kind == IMAGE:
                width, height = await self._images(job, source, have)
            elif job.kind == VIDEO:
                width, height = await self._videos(job, source, have)
            else:
                raise UnrenderableSource(f"this transformer renders no {job.kind!r} jobs")
            recorded = await self._media.finish_renditions(job.media_id, job.recipe_version, width=width,
                                                           height=height)
        except NotFound:
            log.info("rendition job %s: the media was deleted while it ran", job.job_id)
            return
        if recorded:
            metrics.LAG.labels(job.kind).observe(max(0.0, time.time() - ids.unix_ms(job.media_id) / 1000))

    async def _in_thread(self, kind: str, call: Callable[[], T]) -> T:
        began = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        finally:
            metrics.RENDER_SECONDS.labels(kind).observe(time.perf_counter() - began)

    async def _put(self, job: RenditionJob, key: int, content_type: str, width: int, height: int,
                   data: bytes, have: dict[int, Rendition]) -> Rendition:
        """Stores one rendition unless the media has it already; returns the one recorded."""
        if key in have:
            return have[key]
        rendition, created = await self._media.put_rendition(job.media_id, key, content_type=content_type,
                                                             width=width, height=height, data=data)
        metrics.RENDITIONS.labels(job.kind, "new" if created else "kept").inc()
        log.info("rendition %#x of %d stored (%s, %dx%d, %d bytes)", key, job.media_id, content_type, width, height,
                 len(data))
        have[key] = rendition
        return rendition

    async def _images(self, job: RenditionJob, source: bytes, have: dict[int, Rendition]) -> tuple[int, int]:
        """Stores the image sizes not stored yet; returns the source's displayed size."""
        shown = await self._in_thread(job.kind, lambda: images.inspect(source, max_pixels=self._max_pixels))
        if all(spec.alternate_key in have for spec in self._specs):
            return shown.width, shown.height
        rendered = await self._in_thread(job.kind, lambda: images.render(
            source, self._specs, max_pixels=self._max_pixels, quality=self._quality))
        for out in rendered:
            await self._put(job, out.alternate_key, out.content_type, out.width, out.height, out.data, have)
        return shown.width, shown.height

    async def _videos(self, job: RenditionJob, source: bytes, have: dict[int, Rendition]) -> tuple[int, int]:
        """The poster, then the ladder rung by rung, lowest first: each rung's segments, its
        playlist, then a master playlist of the rungs so far (players see the lower rungs
        while the higher ones encode). Returns the source's displayed size."""
        recipe = self._video
        probed = await self._in_thread(job.kind, lambda: video.probe(source, max_s=recipe.max_s,
                                                                       max_pixels=self._max_pixels))
        rungs = video.ladder(probed, recipe.rungs)
        if keys.master_key(len(rungs)) in have:
            return probed.width, probed.height
        if keys.VIDEO_POSTER not in have:
            jpeg, w, h = await self._in_thread(job.kind, lambda: video.poster(source, max_width=1080,
                                                                                 quality=self._quality))
            await self._put(job, keys.VIDEO_POSTER, video.POSTER_TYPE, w, h, jpeg, have)
        published: list[tuple[video.EncodedRung, str]] = []
        with tempfile.TemporaryDirectory(prefix="trenchcoat-video-") as workdir:
            for rung in rungs:
                encoded = await self._in_thread(job.kind, functools.partial(
                    video.encode_rung, source, probed, rung, Path(workdir), segment_s=recipe.segment_s,
                    preset=recipe.preset))
                if probed.duration_s and encoded.encode_s:
                    metrics.REALTIME.labels(str(rung.height)).observe(probed.duration_s / encoded.encode_s)
                urls = [(await self._put(job, keys.segment_key(rung.index, s.n), video.SEGMENT_TYPE, rung.width,
                                         rung.height, s.data, have)).url for s in encoded.segments]
                playlist = video.rung_playlist(encoded, urls, recipe.segment_s).encode()
                stored = await self._put(job, keys.playlist_key(rung.index), video.PLAYLIST_TYPE, rung.width,
                                         rung.height, playlist, have)
                published.append((encoded, stored.url))
                master = video.master_playlist(published).encode()
                await self._put(job, keys.master_key(len(published)), video.PLAYLIST_TYPE, rung.width,
                                rung.height, master, have)
        return probed.width, probed.height
