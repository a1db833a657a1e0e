"""``python -m cache``: one photo cache process: photo URLs over HTTP (what the CDN pulls),
CacheService over gRPC (reads by media_id through the router, invalidations)."""

from __future__ import annotations

import sys

from cache.gateway import Gateway
from cache.leases import LeaseTable
from cache.photos import PhotoCache
from cache.reads import F4Reader, ReplicaReader
from cache.service import SERVICE_NAME, CacheServicer
from cache.transforms import Resizer
from trenchcoat import permissions, server, tls
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.store_http import StoreHttpClient
from trenchcoat.httpsite import HttpSite
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import cache_pb2_grpc


def main() -> int:
    config = server.load_config("cache", "A photo cache process.")
    section = config.cache

    async def build() -> server.ServiceHost:
        pool = ChannelPool()
        directory = DirectoryClient(pool, config.directory_endpoints(), timeout_s=config.directory.call_timeout_s)
        stores = StoreClient(pool, timeout_s=section.store_timeout_s)
        leases = LeaseTable(section.lease_period_s, section.lease_wait_s, linger_bytes=section.capacity_bytes // 4)
        http = StoreHttpClient(timeout_s=section.store_timeout_s)
        warm = F4Reader(F4Client(pool, config.f4_endpoint(), timeout_s=section.store_timeout_s))
        cache = PhotoCache(section.capacity_bytes, leases, ReplicaReader(http, stores), directory, warm)
        resizer = Resizer(pool, config.transformer_endpoints(), config.transformer.on_read_sizes,
                          timeout_s=section.transform_timeout_s)
        identity = server.process_identity()
        # Over mutual TLS, to the roles the table lets read the cache (the CDN first).
        site = HttpSite(Gateway(cache, resizer).app(), config.cluster.host, section.http_port, what="photo",
                        tls=tls.HttpServerTls(identity) if identity is not None else None,
                        callers=permissions.http_callers("photo"))
        await site.start()
        return server.host_for(
            f"cache@{section.port}", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, CacheServicer(cache), cache_pb2_grpc.add_CacheServiceServicer_to_server)],
            workers=[directory, site],
            closers=[pool.close, http.close],
            ready=[directory.ready.wait],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
