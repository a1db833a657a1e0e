"""A process's identity from its Kubernetes pod: a StatefulSet pod's host name ends in its
ordinal (``store-3``), and the keys left to it (store.machine_id 0, store.rack empty,
f4_storage.node_id 0) are filled in from it at load, before the checks."""

from __future__ import annotations

import dataclasses
import re

from trenchcoat.config.whole import Config
from trenchcoat.errors import ConfigError

# A DNS label (what a pod's host name is) ending in -<ordinal>
# (compiled on first use: most processes never need it)
_POD_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?-(\d+)"


def pod_ordinal(hostname: str) -> int | None:
    """The ordinal of a StatefulSet pod from its host name (``store-3`` -> 3), or None."""
    match = re.fullmatch(_POD_NAME, hostname)
    return int(match.group(2)) if match else None


def from_ordinal(config: Config, hostname: str) -> Config:
    """Fills the identities left to the StatefulSet ordinal (store.machine_id 0, store.rack
    empty, f4_storage.node_id 0) from the pod's host name."""
    store, node = config.store, config.f4_storage
    wanted = [key for key, unset in (("store.machine_id", store.machine_id == 0), ("store.rack", not store.rack),
                                     ("f4_storage.node_id", node.node_id == 0)) if unset]
    if not wanted:
        return config
    ordinal = pod_ordinal(hostname)
    if ordinal is None:
        raise ConfigError(f"{', '.join(wanted)} left to the StatefulSet pod's ordinal, but the host name "
                          f"{hostname!r} does not end in -<ordinal>; set {wanted[0]} explicitly")
    if store.machine_id == 0:
        store = dataclasses.replace(store, machine_id=ordinal + 1)
    if not store.rack and store.racks:
        store = dataclasses.replace(store, rack=store.racks[ordinal % len(store.racks)])
    if node.node_id == 0:
        node = dataclasses.replace(node, node_id=ordinal + 1)
    return dataclasses.replace(config, store=store, f4_storage=node)
