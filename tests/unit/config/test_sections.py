"""The sections' own checks, those relating several keys (each key's bounds are the checker's,
test_checks.py): each refuses naming the key, and lets the edge through."""

from __future__ import annotations

import pytest

from trenchcoat import config
from trenchcoat.errors import ConfigError


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CACHE__LEASE_WAIT_S": "10.5"}, "cache.lease_wait_s: must be at most lease_period_s (10.0), got 10.5"),
        ({"FEED__LEASE_WAIT_S": "11"}, "feed.lease_wait_s: must be at most lease_period_s (10.0), got 11.0"),
        ({"FEED__PAGE_SIZE": "201"}, "feed.page_size: must be at most max_page_size (200), got 201"),
        ({"ROUTER__DELETE_RETRY_MAX_S": "1"}, "router.delete_retry_max_s: must be >= delete_retry_interval_s"),
        ({"F4__HEDGE_S": "10"}, "f4.hedge_s: must be < call_timeout_s (10.0), got 10.0"),
        ({"STORE__MAX_NEEDLE_BYTES": "4096", "STORE__VOLUME_CAPACITY_BYTES": "4096"},
         "store.max_needle_bytes: must be smaller than volume_capacity_bytes (4096), got 4096"),
        ({"STORE__RACK_LABEL": "topology.kubernetes.io/zone"}, "store.node: must name the node"),
        ({"CDN__METRICS_PORT": "8080"}, "cdn.metrics_port: must not be cdn.port, got 8080"),
        ({"STORE__PORT": "65534"}, "store.port: 65534 + count 6 runs past port 65535"),
        ({"F4__CELLS": "a,b"}, "f4.cells: names one cell or three"),
        ({"F4_STORAGE__DOMAINS": "a,.hidden"}, "f4_storage.domains: must be directory names, got ['.hidden']"),
        ({"TRANSFORMER__IMAGE_RENDITIONS": "1:150,1:320"}, "transformer.image_renditions: names an alternate key twice"),
        ({"TRANSFORMER__IMAGE_RENDITIONS": "0:150"}, "transformer.image_renditions: alternate keys must be in 1..255"),
        ({"TRANSFORMER__IMAGE_RENDITIONS": "1:8"}, "transformer.image_renditions: sizes must be in 16..8192 px"),
        ({"TRANSFORMER__IMAGE_RENDITIONS": "1:150:round"}, "'1:150:round' is not <alternate key>:<px>[:square]"),
        ({"TRANSFORMER__ON_READ_SIZES": "150"}, "transformer.on_read_sizes:"),
        ({"CACHE__PORT": "7201"}, "port 7201 (cache.port) is also store.port + 1"),
    ],
)
def test_a_relation_broken_is_refused_naming_the_key(env, needle):
    with pytest.raises(ConfigError) as info:
        config.load(None, {f"TRENCHCOAT_{k}": v for k, v in env.items()})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "env",
    [
        {"CACHE__LEASE_WAIT_S": "10"},
        {"FEED__PAGE_SIZE": "200"},
        {"ROUTER__DELETE_RETRY_MAX_S": "2"},
        {"F4__HEDGE_S": "9.9"},
        {"STORE__MAX_NEEDLE_BYTES": "4095", "STORE__VOLUME_CAPACITY_BYTES": "4096"},
        {"STORE__RACK_LABEL": "topology.kubernetes.io/zone", "STORE__NODE": "node-1"},
        {"STORE__PORT": "65530", "STORE__HTTP_PORT": "0"},
        {"F4__CELLS": "a,b,c"},
        {"F4_STORAGE__DOMAINS": "a,b"},
    ],
)
def test_a_relation_on_its_edge_passes(env):
    config.load(None, {f"TRENCHCOAT_{k}": v for k, v in env.items()})
