"""``python -m store``: one Haystack store machine.

Reads the cluster config (``--config``, $TRENCHCOAT_CONFIG or ./trenchcoat.toml) and its
``[store]`` section; keeps volumes in ``<cluster.data_dir>/store-<machine_id>/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from store import metrics
from store.service import SERVICE_NAME, StoreServicer
from store.volume import VolumeLimits
from store.volumes import Checkpointer, VolumeSet
from trenchcoat import config as configmod
from trenchcoat import server
from trenchcoat.errors import ConfigError
from trenchcoat.v1 import store_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m store", description="A Haystack store machine.")
    parser.add_argument("--config", help="cluster config file (TOML)")
    args = parser.parse_args()
    try:
        config = configmod.load(args.config or configmod.default_path(os.environ), os.environ)
    except ConfigError as exc:
        print(f"store: {exc}", file=sys.stderr)
        return 2
    server.setup_logging(config.cluster.log_level)
    section = config.store
    directory = Path(config.cluster.data_dir) / f"store-{section.machine_id}"

    async def build() -> server.ServiceHost:
        volumes = VolumeSet(
            directory,
            VolumeLimits(section.volume_capacity_bytes, section.max_needle_bytes),
            section.io_threads,
        )
        await volumes.load()
        metrics.register(volumes.all)
        return server.host_for(
            f"store-{section.machine_id}",
            config.cluster,
            section,
            bindings=[server.Binding(SERVICE_NAME, StoreServicer(volumes, section.machine_id),
                                     store_pb2_grpc.add_StoreServiceServicer_to_server)],
            workers=[Checkpointer(volumes, section.checkpoint_interval_s)],
            # After the last RPC has drained: final checkpoints, descriptors closed.
            closers=[volumes.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
