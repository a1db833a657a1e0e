"""``python -m transformer``: one transformer worker process (``[transformer] count`` of
them run). It runs rendition jobs from the ``transformer:{jobs}`` stream as a member of its
consumer group (``trenchcoat.jobqueue``: taken over from dead workers, retried with
backoff, through a dependency's outage for ``retry_budget_s``, dead-lettered with every
attempt's error; ``transformer/jobs.py`` says what a job does and which failures pass)
and serves TransformerService (submit, job states, dead letters and their retry), gRPC
health and /metrics like every service."""

from __future__ import annotations

import os
import socket
import sys

from transformer import metrics
from transformer.images import ImageSpec
from transformer.jobs import RenditionJobs, VideoRecipe
from transformer.onread import OnRead
from transformer.service import SERVICE_NAME, TransformerServicer
from trenchcoat import redisio, server
from trenchcoat.clients.media import MediaClient
from trenchcoat.jobqueue import JobRunner
from trenchcoat.rendition_jobs import RenditionQueue
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import transformer_pb2_grpc
from trenchcoat.workers import PeriodicWorker

DEPTH_INTERVAL_S = 5.0


class QueueGauges(PeriodicWorker):
    """Publishes the queue's depth and dead letters as gauges."""

    def __init__(self, queue: RenditionQueue) -> None:
        super().__init__("rendition queue gauges", DEPTH_INTERVAL_S)
        self._queue = queue

    async def tick(self) -> None:
        queued, dead = await self._queue.depth()
        metrics.QUEUE_DEPTH.set(queued)
        metrics.DEAD_DEPTH.set(dead)


def main() -> int:
    config = server.load_config("transformer", "A transformer worker: rendition jobs off the upload path.")
    section = config.transformer
    if not config.redis.url:
        print("transformer: redis.url is empty: rendition jobs live in a Redis stream", file=sys.stderr)
        return 2
    routers = config.router_endpoints()

    async def build() -> server.ServiceHost:
        redis = redisio.from_config(config.redis)
        pool = ChannelPool()
        queue = RenditionQueue(redis)
        # One router serves a worker's reads and writes; workers spread over the routers.
        media = MediaClient(pool, routers[os.getpid() % len(routers)], timeout_s=section.call_timeout_s)
        specs = tuple(ImageSpec(key, px, square) for key, px, square in section.image_specs())
        recipe = VideoRecipe(section.video_rungs, section.segment_s, section.video_preset, section.max_video_s)
        jobs = RenditionJobs(queue, media, specs, recipe, max_pixels=section.max_pixels,
                             max_source_bytes=section.max_source_bytes, quality=section.jpeg_quality,
                             threads=section.concurrency)
        onread = OnRead(section.on_read_sizes, max_pixels=section.max_pixels,
                        max_source_bytes=section.max_source_bytes, quality=section.jpeg_quality,
                        threads=section.concurrency)
        runner = JobRunner(queue, jobs, consumer=f"{socket.gethostname()}-{os.getpid()}",
                           concurrency=section.concurrency, max_attempts=section.max_attempts,
                           claim_idle_s=section.claim_idle_s, retry_budget_s=section.retry_budget_s)

        async def close_pools() -> None:
            jobs.close()
            onread.close()

        return server.host_for(
            f"transformer@{section.port}", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, TransformerServicer(queue, onread, recipe_version=section.recipe_version),
                                     transformer_pb2_grpc.add_TransformerServiceServicer_to_server)],
            workers=[runner, QueueGauges(queue)],
            closers=[close_pools, pool.close, redis.aclose],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
