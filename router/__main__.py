"""``python -m router``: the front door (MediaService over gRPC)."""

from __future__ import annotations

import sys

from router.directory_client import DirectoryClient
from router.metadata import MediaStore
from router.replicas import StoreWriters
from router.service import SERVICE_NAME, MediaServicer
from router.upload import Uploader, UploadLimits
from trenchcoat import server
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
        uploader = Uploader(directory, writers, media, UploadLimits(section.max_upload_bytes, section.replica_timeout_s))
        servicer = MediaServicer(uploader, media, directory, cdn_base_url=section.cdn_base_url,
                                 caches=config.cache.count)
        return server.host_for(
            "router", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, servicer, router_pb2_grpc.add_MediaServiceServicer_to_server)],
            workers=[directory],
            closers=[writers.close, directory.close, media.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
