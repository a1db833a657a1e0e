"""The TransformerService servicer: protobuf in, a call on the rendition queue, protobuf out."""

from __future__ import annotations

import time

from grpc.aio import ServicerContext

from transformer.errors import BadJobRequest, JobNotFound
from transformer.onread import OnRead
from trenchcoat.errors import InvalidArgument
from trenchcoat.jobqueue import DeadLetter
from trenchcoat.rendition_jobs import (
    KINDS,
    JobState,
    JobStatus,
    RenditionJob,
    RenditionQueue,
    kind_for,
)
from trenchcoat.transforms import FORMATS, BadTransform, TransformSpec
from trenchcoat.v1 import media_pb2, transformer_pb2, transformer_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.TransformerService"
DEFAULT_DEAD_LETTERS = 100
MAX_DEAD_LETTERS = 1000

_STATES = {JobState.QUEUED: transformer_pb2.JOB_QUEUED, JobState.RUNNING: transformer_pb2.JOB_RUNNING,
           JobState.DONE: transformer_pb2.JOB_DONE, JobState.DEAD: transformer_pb2.JOB_DEAD}


def job_pb(status: JobStatus) -> transformer_pb2.Job:
    job = status.job
    return transformer_pb2.Job(job_id=job.job_id, ref=media_pb2.MediaRef(media_id=job.media_id),
                               state=_STATES[status.state], attempts=status.attempts, last_error=status.last_error,
                               kind=job.kind, recipe_version=job.recipe_version,
                               dead_reason=status.last_error if status.state is JobState.DEAD else "")


def dead_job_pb(letter: DeadLetter) -> transformer_pb2.Job:
    try:
        job = RenditionJob.from_fields(letter.fields)
    except ValueError:  # a malformed entry, dead-lettered as such: shown as it is
        return transformer_pb2.Job(job_id=letter.fields.get("job_id", ""), state=transformer_pb2.JOB_DEAD,
                                   dead_reason=letter.reason, errors=letter.errors)
    return transformer_pb2.Job(job_id=job.job_id, ref=media_pb2.MediaRef(media_id=job.media_id),
                               state=transformer_pb2.JOB_DEAD, attempts=letter.failures,
                               last_error=letter.errors[-1] if letter.errors else "", kind=job.kind,
                               recipe_version=job.recipe_version, errors=letter.errors, dead_reason=letter.reason)


class TransformerServicer(transformer_pb2_grpc.TransformerServiceServicer):
    def __init__(self, queue: RenditionQueue, transforms: OnRead, *, recipe_version: int) -> None:
        self._queue = queue
        self._transforms = transforms
        self._version = recipe_version

    async def Transform(
        self, request: transformer_pb2.TransformRequest,
        context: ServicerContext[transformer_pb2.TransformRequest, transformer_pb2.TransformResponse],
    ) -> transformer_pb2.TransformResponse:
        if request.fit not in (transformer_pb2.FIT_MODE_UNSPECIFIED, transformer_pb2.FIT_CONTAIN,
                               transformer_pb2.FIT_COVER):
            raise BadTransform(f"unknown fit mode {request.fit}")
        content_type = request.content_type or "image/jpeg"
        if content_type not in FORMATS.values():
            raise BadTransform(f"content_type must be one of {', '.join(FORMATS.values())}, got {content_type!r}")
        spec = TransformSpec(request.width, request.height, request.fit == transformer_pb2.FIT_COVER, content_type)
        out = await self._transforms.transform(request.data, spec)
        return transformer_pb2.TransformResponse(data=out.data, content_type=out.content_type, width=out.width,
                                                 height=out.height)

    async def SubmitRenditions(
        self, request: transformer_pb2.SubmitRenditionsRequest,
        context: ServicerContext[transformer_pb2.SubmitRenditionsRequest, transformer_pb2.SubmitRenditionsResponse],
    ) -> transformer_pb2.SubmitRenditionsResponse:
        try:
            kind = kind_for(request.content_type)
        except InvalidArgument as exc:
            raise BadJobRequest(str(exc)) from None
        if kind is None:
            raise BadJobRequest(f"{request.content_type!r} gets no renditions (images and videos do)")
        status, _ = await self._queue.submit(RenditionJob(request.ref.media_id, kind, self._version))
        return transformer_pb2.SubmitRenditionsResponse(jobs=[job_pb(status)])

    async def GetJobs(
        self, request: transformer_pb2.GetJobsRequest,
        context: ServicerContext[transformer_pb2.GetJobsRequest, transformer_pb2.GetJobsResponse],
    ) -> transformer_pb2.GetJobsResponse:
        jobs = []
        for kind in KINDS:
            status = await self._queue.status(RenditionJob(request.ref.media_id, kind, self._version))
            if status is not None:
                jobs.append(job_pb(status))
        return transformer_pb2.GetJobsResponse(jobs=jobs)

    async def ListDeadLetters(
        self, request: transformer_pb2.ListDeadLettersRequest,
        context: ServicerContext[transformer_pb2.ListDeadLettersRequest, transformer_pb2.ListDeadLettersResponse],
    ) -> transformer_pb2.ListDeadLettersResponse:
        if request.limit > MAX_DEAD_LETTERS:
            raise BadJobRequest(f"limit is at most {MAX_DEAD_LETTERS}, got {request.limit}")
        letters = await self._queue.dead_letters(request.limit or DEFAULT_DEAD_LETTERS, newest_first=False)
        _, depth = await self._queue.depth()
        return transformer_pb2.ListDeadLettersResponse(jobs=[dead_job_pb(letter) for letter in letters], depth=depth)

    async def GetQueue(
        self, request: transformer_pb2.GetQueueRequest,
        context: ServicerContext[transformer_pb2.GetQueueRequest, transformer_pb2.GetQueueResponse],
    ) -> transformer_pb2.GetQueueResponse:
        queued, dead = await self._queue.depth()
        oldest = await self._queue.oldest_ms()
        return transformer_pb2.GetQueueResponse(
            queued=queued, in_flight=await self._queue.in_flight(), dead=dead,
            oldest_age_s=max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0)

    async def RetryDeadLetter(
        self, request: transformer_pb2.RetryDeadLetterRequest,
        context: ServicerContext[transformer_pb2.RetryDeadLetterRequest, transformer_pb2.RetryDeadLetterResponse],
    ) -> transformer_pb2.RetryDeadLetterResponse:
        try:
            job = RenditionJob.parse_id(request.job_id)
        except ValueError as exc:
            raise BadJobRequest(str(exc)) from None
        letter = await self._queue.dead_letter_by(lambda fields: fields.get("job_id") == job.job_id)
        if letter is None:
            raise JobNotFound(f"job {job.job_id} is not in the dead-letter stream (ListDeadLetters lists them)")
        await self._queue.revive(letter)
        await self._queue.set_state(job, JobState.QUEUED, attempts=0, error=letter.reason)
        status = await self._queue.status(job)
        assert status is not None
        return transformer_pb2.RetryDeadLetterResponse(job=job_pb(status))
