"""``python -m f4``: the f4 front of one cell (F4Service: encode, read, delete, status)."""

from __future__ import annotations

import sys

from f4.front import Front
from f4.geo import Region
from f4.layout import Geometry
from f4.service import SERVICE_NAME, F4Servicer
from trenchcoat import server
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.clients.f4 import BackoffClient, F4StorageClient, KeyStoreClient
from trenchcoat.clients.store import StoreClient
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import f4_pb2_grpc


def main() -> int:
    config = server.load_config("f4", "The f4 front of a cell.")
    section = config.f4
    endpoints = list(config.f4_storage_endpoints())
    if not endpoints:
        print("f4: no storage nodes: set f4.storage_endpoints or f4_storage.count", file=sys.stderr)
        return 2

    async def build() -> server.ServiceHost:
        pool = ChannelPool()
        storage = F4StorageClient(pool, timeout_s=section.call_timeout_s)
        keys = KeyStoreClient(pool, config.f4_keystore_endpoint(), timeout_s=section.call_timeout_s)
        directory = DirectoryClient(pool, config.directory_endpoints(), timeout_s=config.directory.call_timeout_s)
        stores = StoreClient(pool, timeout_s=section.call_timeout_s)
        backoff = BackoffClient(pool, config.f4_backoff_endpoints(), timeout_s=section.call_timeout_s)
        region = Region(storage, keys, Geometry(section.cell_bytes, section.rows), section.cells,
                        hedge_s=section.hedge_s, backoff=backoff)
        front = Front(region, storage, keys, endpoints, directory, stores, call_timeout_s=section.call_timeout_s)
        return server.host_for(
            "f4", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, F4Servicer(front), f4_pb2_grpc.add_F4ServiceServicer_to_server)],
            workers=[directory],
            closers=[pool.close],
            ready=[directory.ready.wait],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
