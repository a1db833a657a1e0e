"""The one client of the transformer's ``TransformerService``: submit an object's
renditions, read its jobs, list and retry dead letters. Used by ``trenchcoat jobs``, the
demo and the tests. Results are plain values (``JobView``); failures are typed errors.
Protobuf stays in this module."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat import rpc
from trenchcoat.transforms import TransformSpec
from trenchcoat.v1 import media_pb2, transformer_pb2, transformer_pb2_grpc

_STATES = {transformer_pb2.JOB_QUEUED: "queued", transformer_pb2.JOB_RUNNING: "running",
           transformer_pb2.JOB_DONE: "done", transformer_pb2.JOB_DEAD: "dead"}


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    media_id: int
    kind: str
    recipe_version: int
    state: str
    """"queued", "running", "done" or "dead"."""
    attempts: int
    last_error: str
    errors: tuple[str, ...]
    dead_reason: str


@dataclass(frozen=True, slots=True)
class Transformed:
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class QueueView:
    queued: int
    """Jobs waiting or running."""
    in_flight: int
    """Jobs a worker has taken and not settled yet."""
    dead: int
    oldest_age_s: float


def job_view(job: transformer_pb2.Job) -> JobView:
    return JobView(job.job_id, job.ref.media_id, job.kind, job.recipe_version, _STATES.get(job.state, ""),
                   job.attempts, job.last_error, tuple(job.errors), job.dead_reason)


class TransformerClient:
    """Calls to one transformer worker (its gRPC address) over a channel pool."""

    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float = 30.0) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s
        self._remote = f"transformer {address}"

    def _stub(self) -> transformer_pb2_grpc.TransformerServiceStub:
        return self._pool.stub(transformer_pb2_grpc.TransformerServiceStub, self.address)

    async def submit(self, media_id: int, content_type: str) -> list[JobView]:
        """Enqueues the object's rendition job (a no-op when it is known already)."""
        request = transformer_pb2.SubmitRenditionsRequest(ref=media_pb2.MediaRef(media_id=media_id),
                                                          content_type=content_type)
        reply = await rpc.unary(self._stub().SubmitRenditions, request, remote=self._remote, timeout=self.timeout_s)
        return [job_view(j) for j in reply.jobs]

    async def jobs(self, media_id: int) -> list[JobView]:
        request = transformer_pb2.GetJobsRequest(ref=media_pb2.MediaRef(media_id=media_id))
        reply = await rpc.unary(self._stub().GetJobs, request, remote=self._remote, timeout=self.timeout_s)
        return [job_view(j) for j in reply.jobs]

    async def dead_letters(self, limit: int = 0) -> tuple[list[JobView], int]:
        """Dead-lettered jobs, oldest first, and how many there are in all."""
        reply = await rpc.unary(self._stub().ListDeadLetters, transformer_pb2.ListDeadLettersRequest(limit=limit),
                                remote=self._remote, timeout=self.timeout_s)
        return [job_view(j) for j in reply.jobs], int(reply.depth)

    async def retry(self, job_id: str) -> JobView:
        reply = await rpc.unary(self._stub().RetryDeadLetter, transformer_pb2.RetryDeadLetterRequest(job_id=job_id),
                                remote=self._remote, timeout=self.timeout_s)
        return job_view(reply.job)

    async def queue(self) -> QueueView:
        reply = await rpc.unary(self._stub().GetQueue, transformer_pb2.GetQueueRequest(), remote=self._remote,
                                timeout=self.timeout_s)
        return QueueView(int(reply.queued), int(reply.in_flight), int(reply.dead), float(reply.oldest_age_s))

    async def transform(self, data: bytes, spec: TransformSpec, *, timeout_s: float | None = None) -> Transformed:
        """``data`` (an image) resized or cropped as ``spec`` says."""
        request = transformer_pb2.TransformRequest(
            data=data, width=spec.width, height=spec.height, content_type=spec.content_type,
            fit=transformer_pb2.FIT_COVER if spec.cover else transformer_pb2.FIT_CONTAIN)
        reply = await rpc.unary(self._stub().Transform, request, remote=self._remote,
                                timeout=timeout_s or self.timeout_s)
        return Transformed(reply.data, reply.content_type, reply.width, reply.height)
