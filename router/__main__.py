"""``python -m router``: the front door (MediaService over gRPC)."""

from __future__ import annotations

import sys

from router.caches import CacheClients
from router.gateway import Gateway, HttpSite
from router.metadata import MediaStore
from router.photos import Photos
from router.replicas import StoreWriters
from router.service import SERVICE_NAME, MediaServicer
from router.upload import Uploader, UploadLimits
from trenchcoat import server
from trenchcoat.directory_client import DirectoryClient
from trenchcoat.v1 import router_pb2_grpc


def main() -> int:
    config = server.load_config("router", "The media router (uploads, stats).")
    section = config.router
    if not config.postgres.dsn:
        print("router: postgres.dsn is empty: media metadata lives in PostgreSQL", file=sys.stderr)
        return 2

    async def build() -> server.ServiceHost:
        media = await MediaStore.connect(config.postgres.dsn)
        await media.migrate()
        directory = DirectoryClient(config.directory_endpoints())
        writers = StoreWriters()
        caches = CacheClients(config.cache_endpoints(), timeout_s=config.cache.lease_wait_s + config.cache.store_timeout_s)
        uploader = Uploader(directory, writers, media, UploadLimits(section.max_upload_bytes, section.replica_timeout_s))
        photos = Photos(media, directory, caches, cdn_base_url=section.cdn_base_url,
                        store_timeout_s=section.replica_timeout_s, row_ttl_s=section.row_ttl_s)
        site = HttpSite(Gateway(photos).app(), config.cluster.host, section.http_port)
        await site.start()
        return server.host_for(
            "router", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, MediaServicer(uploader, media, photos),
                                     router_pb2_grpc.add_MediaServiceServicer_to_server)],
            workers=[directory, site],
            closers=[writers.close, caches.close, directory.close, media.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
