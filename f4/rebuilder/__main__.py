"""``python -m f4.rebuilder``: the rebuilder of one f4 cell. Watches every storage node
(``f4.rebuilder.scan``) and rebuilds whole blocks lost or damaged for longer than
``[f4_rebuilder] grace_s``, throttled to ``f4.rebuild_bytes_per_s``, through a journal in
``<cluster.data_dir>/f4-rebuilder/`` so a rebuild cut short carries on at the next start."""

from __future__ import annotations

import sys
from pathlib import Path

from f4.rebuild import Journal, Rebuilder
from f4.rebuilder.scan import Scanner
from f4.rebuilder.service import SERVICE_NAME, RebuilderServicer
from trenchcoat import server
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import f4_pb2_grpc


def main() -> int:
    config = server.load_config("f4.rebuilder", "The f4 rebuilder of a cell.")
    section = config.f4_rebuilder
    endpoints = list(config.f4_storage_endpoints())
    if not endpoints:
        print("f4.rebuilder: no storage nodes: set f4.storage_endpoints or f4_storage.count", file=sys.stderr)
        return 2

    async def build() -> server.ServiceHost:
        pool = ChannelPool()
        storage = F4StorageClient(pool, timeout_s=config.f4.call_timeout_s)
        journal = Journal(Path(config.cluster.data_dir) / "f4-rebuilder")
        scanner: Scanner | None = None
        rebuilder = Rebuilder(storage, config.f4.rebuild_bytes_per_s, journal, step_bytes=section.step_bytes,
                              stopping=lambda: scanner is not None and scanner.stopping())
        scanner = Scanner(storage, endpoints, rebuilder, grace_s=section.grace_s, interval_s=section.scan_interval_s)
        return server.host_for(
            "f4-rebuilder", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, RebuilderServicer(scanner),
                                     f4_pb2_grpc.add_F4RebuilderServiceServicer_to_server)],
            workers=[scanner],
            closers=[pool.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
