"""Rendition jobs: what the router enqueues after an upload and the transformer's workers
run, on a Redis stream (``trenchcoat.jobqueue``), with each job's state beside it.

A job is the renditions of one kind of one object under one recipe version: ``image``
(the configured sizes of a photo) or ``video`` (an HLS ladder and a poster). Its id is
``<media_id>:<kind>:v<version>``, so submitting it again is a no-op while it is queued,
running, done or dead; ``submit(force=True)`` (the router's sweeper, for a job whose
renditions never appeared) enqueues it again unless it is done.

State lives in the hash ``transformer:job:<job_id>`` (state, attempts, last error, for
``GetJobs`` and ``trenchcoat jobs``), kept ``STATE_TTL_S``. It is a view, not the truth:
the truth is the router's ``renditions`` table and the upload's renditions state, which
the sweeper reads, so a Redis that loses everything loses no rendition.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from trenchcoat import media_types, redisio
from trenchcoat.jobqueue import JobQueue, Streams
from trenchcoat.redisio import failures

STREAMS = Streams(stream="transformer:{jobs}", dead="transformer:{jobs}:dead", group="transformers", what="rendition job")
STATE_TTL_S = 7 * 86_400
"""How long a job's state is kept after its last change."""

IMAGE = "image"
VIDEO = "video"
KINDS = (IMAGE, VIDEO)


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


def kind_for(content_type: str) -> str | None:
    """The job an upload of ``content_type`` gets; None for a type that gets no renditions."""
    mime = media_types.of_mime(content_type).mime
    if mime in ("image/jpeg", "image/png", "image/gif", "image/webp"):
        return IMAGE
    if mime in ("video/mp4", "video/quicktime", "video/webm"):
        return VIDEO
    return None


@dataclass(frozen=True, slots=True)
class RenditionJob:
    media_id: int
    kind: str
    recipe_version: int

    @property
    def job_id(self) -> str:
        return f"{self.media_id}:{self.kind}:v{self.recipe_version}"

    def fields(self) -> dict[str, str]:
        return {"job_id": self.job_id, "media_id": str(self.media_id), "kind": self.kind,
                "recipe_version": str(self.recipe_version)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | dict[str, str]) -> RenditionJob:
        """The job an entry holds; ValueError when it holds none (a malformed entry)."""
        text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in fields.items()}
        try:
            job = cls(int(text["media_id"]), text["kind"], int(text["recipe_version"]))
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a rendition job: {fields!r:.200} ({type(exc).__name__}: {exc})") from None
        if job.kind not in KINDS:
            raise ValueError(f"not a rendition job: unknown kind {job.kind!r} (known: {', '.join(KINDS)})")
        return job

    @classmethod
    def parse_id(cls, job_id: str) -> RenditionJob:
        """The job ``job_id`` names; ValueError when it names none."""
        try:
            media_id, kind, version = job_id.split(":")
            if not version.startswith("v"):
                raise ValueError("no v before the version")
            return cls.from_fields({"media_id": media_id, "kind": kind, "recipe_version": version[1:]})
        except ValueError as exc:
            raise ValueError(f"{job_id[:100]!r} is not a job id (<media_id>:<kind>:v<version>): {exc}") from None


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: RenditionJob
    state: JobState
    attempts: int
    last_error: str
    updated: float


def _state_key(job_id: str) -> str:
    return f"transformer:job:{job_id}"


class RenditionQueue(JobQueue):
    """The rendition job stream and the jobs' states."""

    def __init__(self, redis: redisio.Client) -> None:
        super().__init__(redis, STREAMS)

    async def submit(self, job: RenditionJob, *, force: bool = False) -> tuple[JobStatus, bool]:
        """Enqueues ``job`` unless it is known already (force: unless it is done); returns
        its status and whether it was enqueued now."""
        key = _state_key(job.job_id)
        with failures("submitting a rendition job"):
            claimed = await self.redis.hsetnx(key, "state", JobState.QUEUED.value)
            if not claimed:
                status = await self.status(job)
                if status is not None and (not force or status.state is JobState.DONE):
                    return status, False
            await self.set_state(job, JobState.QUEUED)
        await self.enqueue(job.fields())
        status = await self.status(job)
        assert status is not None
        return status, True

    async def set_state(self, job: RenditionJob, state: JobState, *, attempts: int | None = None,
                        error: str | None = None) -> None:
        key = _state_key(job.job_id)
        fields: dict[Any, Any] = {"state": state.value, "updated": f"{time.time():.3f}", **job.fields()}
        if attempts is not None:
            fields["attempts"] = str(attempts)
        if error is not None:
            fields["last_error"] = error[:1000]
        with failures("recording a rendition job's state"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, STATE_TTL_S)
            await pipe.execute()

    async def status(self, job: RenditionJob) -> JobStatus | None:
        with failures("reading a rendition job's state"):
            raw: Any = await self.redis.hgetall(_state_key(job.job_id))
        if not raw or b"state" not in raw:
            return None
        text = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        try:
            state = JobState(text["state"])
        except ValueError:
            return None
        return JobStatus(job, state, int(text.get("attempts", "0") or 0), text.get("last_error", ""),
                         float(text.get("updated", "0") or 0))
