"""``python -m directory``: one Directory process (all serve; the elected one leads)."""

from __future__ import annotations

import socket
import sys

from directory.leader import Leader
from directory.migration import Migration
from directory.service import SERVICE_NAME, DirectoryServicer
from directory.state import DirectoryState
from directory.view import MapView
from trenchcoat import server
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.etcd import Etcd
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import directory_pb2_grpc


def main() -> int:
    config = server.load_config("directory", "A volume directory process.")
    if not config.etcd.endpoints:
        print("directory: etcd.endpoints is empty: the directory keeps its state in etcd", file=sys.stderr)
        return 2
    section = config.directory
    # Bound to every address (a pod's 0.0.0.0): named by its host (the pod) instead.
    host = config.cluster.host if config.cluster.host not in ("0.0.0.0", "::") else socket.gethostname()
    address = f"{host}:{section.port}"
    name = f"directory@{address}"

    async def build() -> server.ServiceHost:
        etcd = Etcd(config.etcd.endpoints, config.cluster.name, timeout_s=config.etcd.timeout_s)
        state = DirectoryState(etcd)
        view = MapView(state, section.refresh_interval_s)
        await server.until_reachable("etcd", view.load, config.cluster.start_wait_s)
        pool = ChannelPool()
        stores = StoreClient(pool, timeout_s=max(1.0, section.probe_interval_s))
        migration = None
        if config.f4.migrate:
            f4 = F4Client(pool, config.f4_endpoint(), timeout_s=config.f4.call_timeout_s)
            migration = Migration(state, StoreClient(pool, timeout_s=config.f4.call_timeout_s), f4, config.f4,
                                  section.full_ratio)
        leader = Leader(state, stores, section, name=name, address=address, refresh=view.wake, migration=migration)
        return server.host_for(
            name, config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, DirectoryServicer(state, view, leader, migrate=config.f4.migrate),
                                     directory_pb2_grpc.add_DirectoryServiceServicer_to_server)],
            workers=[view, leader],
            closers=[pool.close, etcd.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
