"""``python -m f4.storage``: one f4 storage node.

Keeps blocks in ``<cluster.data_dir>/f4-storage-<node_id>/<domain>/`` for each failure
domain in ``[f4_storage] domains`` and serves F4StorageService.
"""

from __future__ import annotations

import sys
from pathlib import Path

from f4.storage.blocks import BlockStore, Scrubber
from f4.storage.service import SERVICE_NAME, StorageServicer
from trenchcoat import server
from trenchcoat.v1 import f4_pb2_grpc


def main() -> int:
    config = server.load_config("f4.storage", "An f4 storage node.")
    section = config.f4_storage
    root = Path(config.cluster.data_dir) / f"f4-storage-{section.node_id}"

    async def build() -> server.ServiceHost:
        blocks = BlockStore({d: root / d for d in section.domain_names()}, section.io_threads)
        blocks.load()

        async def close() -> None:
            blocks.close()

        return server.host_for(
            f"f4-storage-{section.node_id}", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, StorageServicer(blocks, section.advertise or f"{config.cluster.host}:{section.port}",
                                                                   section.cell),
                                     f4_pb2_grpc.add_F4StorageServiceServicer_to_server)],
            workers=[Scrubber(blocks, section.scrub_interval_s, section.scrub_bytes_per_s)],
            closers=[close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
