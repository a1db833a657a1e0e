"""``python -m f4.keystore``: f4's key store (one per cell), its keys in PostgreSQL."""

from __future__ import annotations

import sys

from f4.keystore.keys import Keys
from f4.keystore.service import SERVICE_NAME, KeyStoreServicer
from trenchcoat import server
from trenchcoat.v1 import f4_pb2_grpc


def main() -> int:
    config = server.load_config("f4.keystore", "f4's key store.")
    section = config.f4_keystore
    if not config.postgres.dsn:
        print("f4.keystore: postgres.dsn is empty: the keys live in PostgreSQL", file=sys.stderr)
        return 2

    async def build() -> server.ServiceHost:
        sharded = await server.sharded_database(Keys, config, process="f4-keystore")  # keys on the media's shard
        keys = sharded.db
        keys.cache_entries = section.cache_entries
        return server.host_for(
            "f4-keystore", config.cluster, section,
            bindings=[server.Binding(SERVICE_NAME, KeyStoreServicer(keys),
                                     f4_pb2_grpc.add_F4KeyStoreServiceServicer_to_server)],
            workers=sharded.workers,
            closers=[sharded.close],
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
