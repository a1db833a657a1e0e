"""``python -m store``: one Haystack store machine.

Reads the cluster config (``--config``, $TRENCHCOAT_CONFIG or ./trenchcoat.toml) and its
``[store]`` section; keeps volumes in ``<cluster.data_dir>/store-<machine_id>/``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from store import metrics
from store.audit import Auditor, DamageReports
from store.http import NeedleHttp
from store.peer import Peers
from store.registration import Registration
from store.service import SERVICE_NAME, StoreServicer
from store.volume import VolumeLimits
from store.volumes import Checkpointer, VolumeSet, findings_of
from trenchcoat import kube, permissions, server, tls
from trenchcoat.clients.store import StoreClient
from trenchcoat.etcd import Etcd
from trenchcoat.httpsite import HttpSite
from trenchcoat.rpc import ChannelPool
from trenchcoat.v1 import store_pb2_grpc

log = logging.getLogger("store")

def main() -> int:
    config = server.load_config("store", "A Haystack store machine.")
    section = config.store
    directory = Path(config.cluster.data_dir) / f"store-{section.machine_id}"

    async def build() -> server.ServiceHost:
        rack = section.rack
        if section.rack_label:
            rack = await kube.node_label(section.node, section.rack_label, os.environ)
            log.info("store %d is on node %s, %s %s: its rack", section.machine_id, section.node,
                     section.rack_label, rack)
        volumes = VolumeSet(
            directory,
            VolumeLimits(section.volume_capacity_bytes, section.max_needle_bytes),
            section.io_threads,
        )
        etcd = (Etcd(config.etcd.endpoints, config.cluster.name, timeout_s=config.etcd.timeout_s)
                if config.etcd.endpoints else None)
        reports = DamageReports(etcd, section.machine_id)
        volumes.on_damage = lambda finding: reports.report(finding, "read")  # every volume gets it, loaded or made
        await volumes.load()
        for volume_id, found in volumes.startup_damage.items():
            for finding in findings_of(volumes.get(volume_id), found):
                reports.report(finding, "startup")
        metrics.register(volumes.all)
        identity = server.process_identity()
        # Over mutual TLS, to the roles the table lets read needles (the HTTP read is ReadNeedle's twin).
        site = HttpSite(NeedleHttp(volumes).app(), config.cluster.host, section.http_port, what="needle read",
                        tls=tls.HttpServerTls(identity) if identity is not None else None,
                        callers=permissions.http_callers("needle read"))
        await site.start()
        workers: list[server.Worker] = [Checkpointer(volumes, section.checkpoint_interval_s), site]
        workers += [reports, Auditor(volumes.all, reports, bytes_per_s=section.audit_bytes_per_s,
                                     interval_s=section.audit_interval_s)]
        pool = ChannelPool()
        peers = Peers(StoreClient(pool, timeout_s=section.peer_timeout_s),
                      chunk_timeout_s=section.peer_timeout_s)
        closers = [volumes.close, pool.close]
        if etcd is not None:
            registration = Registration(
                etcd, machine_id=section.machine_id, address=config.store_address(),
                http_address=config.store_http_address(site.port), rack=rack,
                directory=directory, ttl_s=config.directory.liveness_ttl_s,
            )
            await server.until_reachable("etcd", registration.start, config.cluster.start_wait_s)  # a taken machine id stops the store here
            workers.append(registration)
            closers.append(etcd.close)
        else:
            log.warning("etcd.endpoints is empty: this store runs alone, unknown to any Directory")
        return server.host_for(
            f"store-{section.machine_id}",
            config.cluster,
            section,
            bindings=[server.Binding(SERVICE_NAME, StoreServicer(volumes, section.machine_id, peers),
                                     store_pb2_grpc.add_StoreServiceServicer_to_server)],
            workers=workers,
            # After the last RPC has drained: final checkpoints, descriptors closed.
            closers=closers,
        )

    return server.run(build)


if __name__ == "__main__":
    sys.exit(main())
