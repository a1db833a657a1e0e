"""``python -m router``: the front door (MediaService over gRPC)."""

from __future__ import annotations

import sys

from router.deletes import DeleteJournal
from router.metadata import MediaStore
from router.photos import Photos
from router.renditions import RenditionDuties, RenditionWriter
from router.service import SERVICE_NAME, MediaServicer
from router.upload import Uploader, UploadLimits
from trenchcoat import redisio, server, siblings
from trenchcoat.clients.cache import CacheClient
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.rendition_jobs import RenditionQueue
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import router_pb2_grpc


def main() -> int:
    config = server.load_config("router", "The media router (uploads, reads, deletes, stats).")
    siblings.prepare(config.router.workers)
    section = config.router
    if not config.postgres.dsn:
        print("router: postgres.dsn is empty: media metadata lives in PostgreSQL", file=sys.stderr)
        return 2
    if section.renditions and not config.redis.url:
        print("router: redis.url is empty, and router.renditions enqueues rendition jobs there "
              "(set router.renditions = false for a cluster without transformers)", file=sys.stderr)
        return 2

    async def build() -> server.ServiceHost:
        sharded = await server.sharded_database(MediaStore, config, process="router")  # rows where the map says
        media = sharded.db
        pool = ChannelPool()
        directory = DirectoryClient(pool, config.directory_endpoints(), timeout_s=config.directory.call_timeout_s)
        stores = StoreClient(pool, timeout_s=section.replica_timeout_s)
        caches = CacheClient(pool, config.cache_endpoints(),
                             timeout_s=config.cache.lease_wait_s + config.cache.store_timeout_s)
        uploader = Uploader(directory, stores, media, UploadLimits(section.max_upload_bytes, section.replica_timeout_s))
        f4 = F4Client(pool, config.f4_endpoint(), timeout_s=section.replica_timeout_s) if config.f4.migrate else None
        closers = [pool.close, sharded.close]
        # Redis holds the rendition jobs and the feed's cached media facts (dropped here when
        # a media's renditions finish or it is deleted).
        redis = redisio.from_config(config.redis) if config.redis.url else None
        if redis is not None:
            closers.append(redis.aclose)
        deletes = DeleteJournal(media, directory, stores, caches, interval_s=section.delete_retry_interval_s,
                                max_backoff_s=section.delete_retry_max_s, call_timeout_s=section.replica_timeout_s,
                                f4=f4, feed_facts=redis)
        photos = Photos(media, directory, caches, deletes, cdn_base_url=section.cdn_base_url,
                        row_ttl_s=section.row_ttl_s)
        writer = RenditionWriter(uploader, media, deletes, feed_facts=redis)
        workers: list[server.Worker] = [directory, deletes, *sharded.workers]
        duties = None
        if section.renditions and redis is not None:  # (main() refuses renditions without redis.url)
            duties = RenditionDuties(media, RenditionQueue(redis), recipe_version=config.transformer.recipe_version,
                                     sweep_after_s=section.renditions_sweep_after_s,
                                     sweep_interval_s=section.renditions_sweep_interval_s)
            workers.append(duties)
        return server.host_for(
            "router", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, MediaServicer(uploader, media, photos, writer, duties),
                                     router_pb2_grpc.add_MediaServiceServicer_to_server)],
            workers=workers,
            closers=closers,
            ready=[directory.ready.wait],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
