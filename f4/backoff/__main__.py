"""``python -m f4.backoff``: one f4 backoff node. It holds nothing: asked for a byte range
of a lost block, it reads the same range of 10 other blocks of the stripe from the storage
nodes the request names and rebuilds it (``f4.reconstruct``), so the CPU-heavy decode of a
degraded warm read runs here, not on the front."""

from __future__ import annotations

import sys

from f4.backoff.service import SERVICE_NAME, BackoffServicer
from trenchcoat import server
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import f4_pb2_grpc


def main() -> int:
    config = server.load_config("f4.backoff", "An f4 backoff node.")
    section = config.f4_backoff

    async def build() -> server.ServiceHost:
        pool = ChannelPool()
        storage = F4StorageClient(pool, timeout_s=section.call_timeout_s)
        return server.host_for(
            "f4-backoff", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, BackoffServicer(storage),
                                     f4_pb2_grpc.add_F4BackoffServiceServicer_to_server)],
            closers=[pool.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
