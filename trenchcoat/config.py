"""The cluster config: one TOML file with a section per service, read once at start.

Each process loads the whole file into typed, frozen dataclasses (``load``), takes its own
section and passes it down; nothing else reads the file or the environment. An
environment variable ``TRENCHCOAT_<SECTION>__<KEY>`` overrides one key
(``TRENCHCOAT_STORE__PORT=7301``); that is also how ``trenchcoat up`` and Kubernetes give
each process its identity. Unknown sections or keys, wrong types and bad values raise
``ConfigError`` naming the key and why.

Every key, its default and its meaning is in ``trenchcoat.example.toml`` at the repo root,
which loads to exactly the defaults here (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trenchcoat.errors import ConfigError
from trenchcoat.transforms import parse_box

ENV_PREFIX = "TRENCHCOAT_"
ENV_SEPARATOR = "__"
#: Environment variable naming the config file when --config is not given.
CONFIG_PATH_ENV = "TRENCHCOAT_CONFIG"


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field carrying its documentation (shown by ``trenchcoat config``)."""
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Settings for the whole cluster."""

    name: str = doc("Cluster name, shown by `trenchcoat up`.", default="local")
    data_dir: str = doc(
        "Directory for all local state: volumes, private etcd/PostgreSQL/Redis data, logs.",
        default=".trenchcoat",
    )
    host: str = doc("Address services bind and advertise.", default="127.0.0.1")
    log_level: str = doc("Python log level: DEBUG, INFO, WARNING or ERROR.", default="INFO")
    start_wait_s: float = doc(
        "Seconds a starting process keeps retrying a dependency it cannot reach (etcd, "
        "PostgreSQL) before it exits saying why. 0: it exits at once (`trenchcoat up` starts "
        "the dependencies first). Kubernetes starts pods in any order: k8s/base waits 100 s, "
        "within the startup probes' window.",
        default=0.0,
    )

    def validate(self) -> None:
        _require(bool(self.name), "cluster.name", "must not be empty")
        _require(0 <= self.start_wait_s <= 3600, "cluster.start_wait_s", "must be in 0..3600 seconds")
        _require(bool(self.data_dir), "cluster.data_dir", "must not be empty")
        _require(bool(self.host), "cluster.host", "must not be empty")
        _require(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "cluster.log_level",
            f"must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcdConfig:
    """Where Directory state, liveness leases and leader election live."""

    endpoints: tuple[str, ...] = doc(
        "etcd client endpoints as host:port. Empty: `trenchcoat up` starts a private etcd.",
        default=(),
    )
    timeout_s: float = doc(
        "Deadline of each call to etcd (directories, stores); past it the call fails UNAVAILABLE "
        "naming etcd and the next endpoint is tried on the next call.",
        default=3.0,
    )

    def validate(self) -> None:
        for endpoint in self.endpoints:
            _require_host_port(endpoint, "etcd.endpoints")
        _require(self.timeout_s > 0, "etcd.timeout_s", f"must be > 0, got {self.timeout_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresConfig:
    """Where media metadata, posts and follows live."""

    dsn: str = doc(
        "libpq connection URI. Empty: `trenchcoat up` starts a private PostgreSQL.",
        default="",
    )
    timeout_s: float = doc(
        "Deadline of each piece of work a service does in PostgreSQL (routers, the feed and "
        "its workers): waiting for a pooled connection and every statement of it. Past it the "
        "request fails UNAVAILABLE naming PostgreSQL. Connecting at start may take 3 times this.",
        default=3.0,
    )

    def validate(self) -> None:
        _require(
            not self.dsn or self.dsn.startswith(("postgresql://", "postgres://")),
            "postgres.dsn",
            f"must be a postgresql:// URI, got {self.dsn!r}",
        )
        _require(self.timeout_s > 0, "postgres.timeout_s", f"must be > 0, got {self.timeout_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig:
    """Where timelines, caches and job streams live."""

    url: str = doc("redis:// URL. Empty: `trenchcoat up` starts a private Redis.", default="")
    timeout_s: float = doc(
        "Deadline of each command (or pipeline) a service sends Redis (the feed and its "
        "workers), waiting for a pooled connection and connecting included. Past it the request "
        "fails UNAVAILABLE naming Redis.",
        default=5.0,
    )

    def validate(self) -> None:
        _require(
            not self.url or self.url.startswith(("redis://", "unix://")),
            "redis.url",
            f"must be a redis:// URL, got {self.url!r}",
        )
        _require(self.timeout_s >= 1, "redis.timeout_s",
                 f"must be >= 1 (a fan-out worker waits up to 0.5 s for jobs in one command), got {self.timeout_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    """The Prometheus of the local cluster: `trenchcoat up` starts one (Debian's
    `prometheus`) scraping every process's /metrics, with the rules of
    k8s/observability/rules.yml."""

    enabled: bool = doc("Whether `trenchcoat up` starts Prometheus.", default=True)
    port: int = doc("Prometheus's HTTP port (its UI and API).", default=9090)
    scrape_interval_s: float = doc("Seconds between two scrapes of every process (and rule evaluations).",
                                   default=5.0)
    retention_hours: int = doc("Hours of samples Prometheus keeps on disk (under cluster.data_dir).", default=48)

    def validate(self) -> None:
        _require(1 <= self.port <= 65535, "prometheus.port", f"must be in 1..65535, got {self.port}")
        _require(1 <= self.scrape_interval_s <= 300, "prometheus.scrape_interval_s", "must be in 1..300 seconds")
        _require(self.retention_hours >= 1, "prometheus.retention_hours", "must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Settings every gRPC service process shares."""

    count: int = doc("Processes of this service `trenchcoat up` starts.", default=1)
    port: int = doc(
        "gRPC port. `trenchcoat up` gives process i (from 0) port + i.", default=7000
    )
    metrics_port: int = doc(
        "Prometheus /metrics port. `trenchcoat up` gives process i metrics_port + i.",
        default=9000,
    )
    grace_period_s: float = doc(
        "On SIGTERM, seconds in-flight RPCs get to finish before they are cancelled.",
        default=10.0,
    )
    drain_notice_s: float = doc(
        "On SIGTERM, seconds health reports NOT_SERVING before the listener closes, so "
        "load balancers stop sending new work first.",
        default=0.5,
    )

    def free_port_keys(self) -> tuple[str, ...]:
        """Port keys that may be 0: any free port, found through the Directory."""
        return ()

    def port_keys(self) -> tuple[str, ...]:
        """The keys naming ports this service listens on (process i adds i to each)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.name == "port" or f.name.endswith("_port"))

    def validate(self, section: str) -> None:
        _require(self.count >= 0, f"{section}.count", f"must be >= 0, got {self.count}")
        for key in self.port_keys():
            value = getattr(self, key)
            if value == 0 and key in self.free_port_keys():
                continue
            _require(1 <= value <= 65535, f"{section}.{key}", f"must be in 1..65535, got {value}")
            _require(
                value + max(self.count, 1) - 1 <= 65535,
                f"{section}.{key}",
                f"{value} + count {self.count} runs past port 65535",
            )
        _require(
            self.grace_period_s >= 0,
            f"{section}.grace_period_s",
            f"must be >= 0, got {self.grace_period_s}",
        )
        _require(
            self.drain_notice_s >= 0,
            f"{section}.drain_notice_s",
            f"must be >= 0, got {self.drain_notice_s}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CdnConfig:
    """The pull CDN of the local cluster: nginx in front of the caches' photo HTTP ports. In
    production a commercial CDN (or your edge caches) sits here instead."""

    enabled: bool = doc("Whether `trenchcoat up` starts nginx as the CDN.", default=True)
    port: int = doc("HTTP port of the CDN (router.cdn_base_url should point at it).", default=8080)
    metrics_port: int = doc("Prometheus /metrics port of the CDN: requests by cache status (hit, miss, ...), "
                            "bytes, seconds, from nginx's access log.", default=9080)
    ttl_s: int = doc(
        "Seconds the CDN keeps a photo; a deleted photo is still served from the CDN for at "
        "most this long (nginx has no purge; a production CDN's purge API would be called).",
        default=60,
    )
    not_found_ttl_s: int = doc("Seconds the CDN remembers a 404.", default=5)
    max_bytes: int = doc("Disk the CDN's cache may use.", default=1024 * 1024 * 1024)
    cache_endpoints: tuple[str, ...] = doc(
        "The caches' photo HTTP addresses the CDN pulls from (host:port), cache id i + 1 at "
        "position i. Empty: cluster.host with cache.http_port + i for each of cache.count caches.",
        default=(),
    )

    def validate(self) -> None:
        _require(1 <= self.port <= 65535, "cdn.port", f"must be in 1..65535, got {self.port}")
        _require(1 <= self.metrics_port <= 65535 and self.metrics_port != self.port, "cdn.metrics_port",
                 f"must be in 1..65535 and not cdn.port, got {self.metrics_port}")
        _require(self.ttl_s >= 1, "cdn.ttl_s", "must be >= 1")
        _require(self.not_found_ttl_s >= 0, "cdn.not_found_ttl_s", "must be >= 0")
        _require(self.max_bytes >= 1024 * 1024, "cdn.max_bytes", "must be >= 1 MiB")
        for endpoint in self.cache_endpoints:
            _require_host_port(endpoint, "cdn.cache_endpoints")


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryConfig(ServiceConfig):
    """The volume directory. State lives in etcd; every process serves the API, the one
    elected leader also probes stores, grows, flips and repairs volumes."""

    count: int = doc("Directory processes `trenchcoat up` starts (one leads).", default=2)
    port: int = doc("gRPC port of the first directory; directory i listens on port + i.", default=7100)
    metrics_port: int = doc("/metrics port of the first directory; directory i uses metrics_port + i.", default=9100)
    replicas: int = doc("Copies of every logical volume, each on a different rack.", default=3)
    min_writable_volumes: int = doc(
        "The leader keeps at least this many logical volumes writable, creating new ones.",
        default=4,
    )
    liveness_ttl_s: int = doc(
        "TTL of a store's etcd registration lease (it refreshes every third of it); a store "
        "silent this long is dead.",
        default=6,
    )
    leader_ttl_s: int = doc(
        "TTL of the leader's etcd lease; another directory takes over within about this.",
        default=6,
    )
    probe_interval_s: float = doc("Seconds between the leader's probes of every store.", default=2.0)
    probe_failures: int = doc(
        "Consecutive failed probes after which a store's volumes turn read-only.", default=3
    )
    refresh_interval_s: float = doc(
        "Seconds between reads of the volume map from etcd (changes reach WatchVolumes "
        "subscribers within this).",
        default=0.5,
    )
    full_ratio: float = doc(
        "A logical volume whose largest replica is filled past this fraction turns read-only.",
        default=0.95,
    )
    repair_chunk_bytes: int = doc("Chunk size of the export stream a repair copies with.", default=1024 * 1024)
    call_timeout_s: float = doc(
        "Deadline of a router's call to one directory process (allocating a volume, locating "
        "one, marking one read-only) before the next directory is tried.",
        default=3.0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(1 <= self.replicas <= 16, f"{section}.replicas", f"must be in 1..16, got {self.replicas}")
        _require(self.min_writable_volumes >= 1, f"{section}.min_writable_volumes", "must be >= 1")
        _require(self.liveness_ttl_s >= 2, f"{section}.liveness_ttl_s", "must be >= 2 (seconds)")
        _require(self.leader_ttl_s >= 2, f"{section}.leader_ttl_s", "must be >= 2 (seconds)")
        _require(self.probe_interval_s > 0, f"{section}.probe_interval_s", "must be > 0")
        _require(self.probe_failures >= 1, f"{section}.probe_failures", "must be >= 1")
        _require(self.refresh_interval_s > 0, f"{section}.refresh_interval_s", "must be > 0")
        _require(0 < self.full_ratio <= 1, f"{section}.full_ratio", "must be in (0, 1]")
        _require(self.repair_chunk_bytes >= 4096, f"{section}.repair_chunk_bytes", "must be >= 4096")
        _require(self.call_timeout_s > 0, f"{section}.call_timeout_s", "must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig(ServiceConfig):
    """Haystack store machines."""

    count: int = doc("Store processes `trenchcoat up` starts.", default=6)
    port: int = doc("gRPC port of the first store; store i listens on port + i.", default=7200)
    metrics_port: int = doc("/metrics port of the first store; store i uses metrics_port + i.", default=9200)
    http_port: int = doc(
        "HTTP port of the first store's needle reads (GET /<logical_volume>,<photo>: what a "
        "cache reads a miss with); store i uses http_port + i. 0: any free port (the one "
        "taken is registered).",
        default=7280,
    )
    racks: tuple[str, ...] = doc(
        "Racks (failure domains) `trenchcoat up` spreads stores over: store i is on "
        "racks[i % len(racks)].",
        default=("rack-a", "rack-b", "rack-c"),
    )
    machine_id: int = doc(
        "This process's machine id, unique in the cluster (`trenchcoat up` sets 1 + i). 0: "
        "the ordinal of the StatefulSet pod this runs in, plus 1 (host name `store-3`: 4).",
        default=1,
    )
    rack: str = doc(
        "This process's rack (`trenchcoat up` sets it from racks; in Kubernetes, the node's "
        "name or zone). Empty: racks[ordinal % len(racks)] by the StatefulSet pod's ordinal.",
        default="rack-a",
    )
    rack_label: str = doc(
        "The label of the node this store runs on that names its rack (in Kubernetes: "
        "topology.kubernetes.io/zone, so a zone is a rack), read at start from the API server "
        "with the pod's service account. Empty: store.rack.",
        default="",
    )
    node: str = doc("The Kubernetes node this store runs on (the downward API's spec.nodeName), whose "
                    "rack_label is its rack.", default="")
    advertise: str = doc(
        "host:port the Directory gives out for this store. Empty: cluster.host and port.",
        default="",
    )
    http_advertise: str = doc(
        "host:port the Directory gives out for this store's HTTP needle reads. Empty: "
        "cluster.host and http_port.",
        default="",
    )
    volume_capacity_bytes: int = doc(
        "Largest volume file; a volume that cannot take the next needle turns read-only. "
        "At most 32 GiB (the index stores offsets in 8-byte units in 32 bits).",
        default=1024 * 1024 * 1024,
    )
    max_needle_bytes: int = doc(
        "Largest needle (photo or video chunk) a store accepts; larger writes get INVALID_ARGUMENT.",
        default=64 * 1024 * 1024,
    )
    checkpoint_interval_s: float = doc(
        "Seconds between index checkpoints of changed volumes (also written on clean "
        "shutdown); a restart scans only what was appended since.",
        default=30.0,
    )
    io_threads: int = doc("Threads doing disk reads, writes and fdatasyncs.", default=16)
    peer_timeout_s: float = doc(
        "Deadline of a call to another store, and of each chunk of a repair's export stream "
        "from it (the whole copy takes as long as the volume needs); past it the repair fails "
        "and the Directory retries it.",
        default=10.0,
    )

    def free_port_keys(self) -> tuple[str, ...]:
        return ("http_port",)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(
            4096 <= self.volume_capacity_bytes <= 32 * 1024**3,
            f"{section}.volume_capacity_bytes",
            f"must be in 4096..{32 * 1024**3} (32 GiB), got {self.volume_capacity_bytes}",
        )
        _require(
            1 <= self.max_needle_bytes <= 64 * 1024 * 1024,
            f"{section}.max_needle_bytes",
            f"must be in 1..67108864 (gRPC messages carry at most 80 MiB), got {self.max_needle_bytes}",
        )
        _require(
            self.max_needle_bytes < self.volume_capacity_bytes,
            f"{section}.max_needle_bytes",
            "must be smaller than volume_capacity_bytes",
        )
        _require(self.checkpoint_interval_s > 0, f"{section}.checkpoint_interval_s", "must be > 0")
        _require(1 <= self.io_threads <= 256, f"{section}.io_threads", "must be in 1..256")
        _require(self.peer_timeout_s > 0, f"{section}.peer_timeout_s", "must be > 0")
        _require(len(self.racks) > 0, f"{section}.racks", "must name at least one rack")
        _require(
            len(set(self.racks)) == len(self.racks),
            f"{section}.racks",
            f"names a rack twice: {list(self.racks)}",
        )
        _require(all(self.racks), f"{section}.racks", "rack names must not be empty")
        _require(
            1 <= self.machine_id <= 0xFFFFFFFF,
            f"{section}.machine_id",
            f"must be in 1..4294967295, got {self.machine_id}",
        )
        _require(bool(self.rack), f"{section}.rack", "must not be empty")
        _require(not self.rack_label or bool(self.node), f"{section}.node",
                 "must name the node when rack_label is set (the downward API's spec.nodeName)")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig(ServiceConfig):
    """The photo cache."""

    port: int = doc("gRPC port of the first cache; cache i (cache id i + 1) listens on port + i.", default=7300)
    metrics_port: int = doc("/metrics port of the first cache; cache i uses metrics_port + i.", default=9300)
    http_port: int = doc(
        "Photo HTTP port of the first cache (GET/HEAD of photo URLs: what the CDN pulls); "
        "cache i uses http_port + i.",
        default=7380,
    )
    capacity_bytes: int = doc("Photo bytes one cache process keeps (LRU beyond).", default=256 * 1024 * 1024)
    lease_period_s: float = doc(
        "A miss's lease lasts this long: one Store read per key per period; other readers "
        "of the key wait for it or get its kept answer (kept answers of photos not admitted "
        "take at most a quarter of capacity_bytes).",
        default=10.0,
    )
    lease_wait_s: float = doc(
        "Longest a reader waits for another's lease before it is told to retry (UNAVAILABLE).",
        default=5.0,
    )
    store_timeout_s: float = doc("Seconds one Store read may take before the next replica is tried.", default=3.0)
    transformer_endpoints: tuple[str, ...] = doc(
        "Transformer workers a photo URL with a resize (`?w=&h=`) is transformed by (host:port). "
        "Empty: cluster.host with transformer.port + i for each of transformer.count workers.",
        default=(),
    )
    transform_timeout_s: float = doc("Seconds one resize on read may take at a transformer.", default=10.0)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(self.capacity_bytes >= 0, f"{section}.capacity_bytes", "must be >= 0")
        _require(self.lease_period_s > 0, f"{section}.lease_period_s", "must be > 0")
        _require(0 < self.lease_wait_s <= self.lease_period_s, f"{section}.lease_wait_s",
                 "must be > 0 and at most lease_period_s")
        _require(self.store_timeout_s > 0, f"{section}.store_timeout_s", "must be > 0")
        _require(self.transform_timeout_s > 0, f"{section}.transform_timeout_s", "must be > 0")
        for endpoint in self.transformer_endpoints:
            _require_host_port(endpoint, f"{section}.transformer_endpoints")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig(ServiceConfig):
    """The front door: MediaService over gRPC (uploads, reads and deletes by media_id, stats)."""

    port: int = doc("gRPC port.", default=7400)
    metrics_port: int = doc("Prometheus /metrics port.", default=9400)
    workers: int = doc(
        "Processes of each router sharing its ports (SO_REUSEPORT), one core each; the first "
        "starts the others and serves /metrics for all.",
        default=1,
    )
    directory_endpoints: tuple[str, ...] = doc(
        "Directory addresses as host:port. Empty: cluster.host with directory.port + i "
        "for each of directory.count processes.",
        default=(),
    )
    max_upload_bytes: int = doc(
        "Largest object an upload may carry (at most store.max_needle_bytes).",
        default=32 * 1024 * 1024,
    )
    replica_timeout_s: float = doc(
        "Seconds one replica write may take before the volume is given up for this upload.",
        default=5.0,
    )
    cdn_base_url: str = doc("Base of photo URLs handed to clients (the CDN).", default="http://127.0.0.1:8080")
    row_ttl_s: float = doc(
        "Seconds MediaService.Read trusts a metadata row it read (0: read PostgreSQL on every "
        "call). Photo URLs never read rows: the caches serve them.",
        default=1.0,
    )
    cache_endpoints: tuple[str, ...] = doc(
        "Cache addresses as host:port, cache id i + 1 at position i. Empty: cluster.host "
        "with cache.port + i for each of cache.count processes.",
        default=(),
    )
    delete_retry_interval_s: float = doc(
        "Seconds between passes over the delete journal: deletes not yet flagged on every "
        "replica (one was down) or dropped from every cache are retried, with backoff.",
        default=2.0,
    )
    delete_retry_max_s: float = doc(
        "Longest backoff between two attempts of one journalled delete (also how long a "
        "router holds an entry it is working on).",
        default=60.0,
    )
    renditions: bool = doc(
        "Enqueue rendition jobs (for the transformer's workers, on redis.url) after each "
        "upload, and sweep for uploads whose renditions never finished.",
        default=True,
    )
    renditions_sweep_after_s: float = doc(
        "An upload whose renditions have not finished this long after it (or after its last "
        "sweep) has its job enqueued again (the first was lost, say, with a Redis restart).",
        default=120.0,
    )
    renditions_sweep_interval_s: float = doc("Seconds between two sweeps for unfinished renditions.",
                                             default=10.0)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        for endpoint in self.directory_endpoints:
            _require_host_port(endpoint, f"{section}.directory_endpoints")
        for endpoint in self.cache_endpoints:
            _require_host_port(endpoint, f"{section}.cache_endpoints")
        _require(self.max_upload_bytes >= 1, f"{section}.max_upload_bytes", "must be >= 1")
        _require(self.replica_timeout_s > 0, f"{section}.replica_timeout_s", "must be > 0")
        _require(0 <= self.row_ttl_s <= 60, f"{section}.row_ttl_s", "must be in 0..60 seconds")
        _require(1 <= self.workers <= 256, f"{section}.workers", f"must be in 1..256, got {self.workers}")
        _require(self.delete_retry_interval_s > 0, f"{section}.delete_retry_interval_s", "must be > 0")
        _require(self.delete_retry_max_s >= self.delete_retry_interval_s, f"{section}.delete_retry_max_s",
                 "must be >= delete_retry_interval_s")
        _require(self.renditions_sweep_after_s >= 1, f"{section}.renditions_sweep_after_s", "must be >= 1")
        _require(self.renditions_sweep_interval_s > 0, f"{section}.renditions_sweep_interval_s", "must be > 0")
        _require(
            self.cdn_base_url.startswith(("http://", "https://")),
            f"{section}.cdn_base_url",
            f"must be an http(s):// URL, got {self.cdn_base_url!r}",
        )


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobWorkerConfig(ServiceConfig):
    """Settings of every job worker on a Redis stream (trenchcoat.jobqueue.JobRunner)."""

    concurrency: int = doc("Jobs one worker runs at once.", default=4)
    max_attempts: int = doc("Attempts of a job before it goes to the dead-letter stream with its reason.",
                            default=5)
    claim_idle_s: float = doc(
        "A job claimed by a worker that has not touched it for this long (the worker died) is "
        "taken over by another. Running jobs refresh their claim every third of it.",
        default=30.0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(1 <= self.concurrency <= 64, f"{section}.concurrency", "must be in 1..64")
        _require(1 <= self.max_attempts <= 100, f"{section}.max_attempts", "must be in 1..100")
        _require(self.claim_idle_s >= 1, f"{section}.claim_idle_s", "must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerConfig(JobWorkerConfig):
    """Transformer workers: rendition jobs off the upload path (image sizes, video HLS ladders), read from a
    Redis stream through a consumer group (at least once, reclaimed when a worker dies,
    retried with backoff, dead-lettered with every attempt's error)."""

    count: int = doc("Transformer worker processes `trenchcoat up` starts.", default=2)
    port: int = doc("gRPC port of the first worker (TransformerService); worker i listens on port + i.",
                    default=7500)
    metrics_port: int = doc("/metrics port of the first worker; worker i uses metrics_port + i.", default=9500)
    concurrency: int = doc("Jobs one worker runs at once (each decodes and encodes in a thread).", default=2)
    max_attempts: int = doc("Attempts of a job before it goes to the dead-letter stream. A permanent failure "
                            "(an image that cannot be decoded, too many pixels) goes there at once.", default=5)
    recipe_version: int = doc(
        "Version of the rendition recipes (sizes, quality). Job ids include it: raise it when "
        "a recipe changes, and uploads made after are rendered under the new one.",
        default=1,
    )
    image_renditions: tuple[str, ...] = doc(
        "Image renditions as `<alternate key>:<px>[:square]`: a width of px (a square of px, "
        "center-cropped, with :square), never larger than the source.",
        default=("1:150:square", "2:320", "3:640", "4:1080"),
    )
    jpeg_quality: int = doc("JPEG quality of image renditions (1..95).", default=85)
    max_pixels: int = doc(
        "Largest source image (width x height) a job decodes: a bigger one (a decompression "
        "bomb) fails its job for good, with the reason.",
        default=50_000_000,
    )
    max_source_bytes: int = doc("Largest source a job reads: a bigger one fails its job for good.",
                                default=64 * 1024 * 1024)
    call_timeout_s: float = doc("Deadline of each call to a router (reading a source, storing a rendition).",
                                default=30.0)
    video_rungs: tuple[int, ...] = doc(
        "Heights of a video's HLS ladder (H.264/AAC), each no taller than the source (a source "
        "shorter than the lowest gets one rung at its own height).",
        default=(240, 480, 720, 1080),
    )
    segment_s: float = doc("Seconds of an HLS segment; every rung has a keyframe exactly every this long, so "
                           "segments of all rungs align.", default=2.0)
    video_preset: str = doc("x264 preset of video rungs (speed against size at the same quality).",
                            default="veryfast")
    max_video_s: float = doc("Longest video a job transcodes: a longer one fails its job for good.", default=600.0)
    on_read_sizes: tuple[str, ...] = doc(
        "Boxes a photo URL may ask for on read (`?w=&h=&fit=&fmt=`), as `WxH` (fit inside; 0: "
        "that side free) or `WxH:cover` (fill and crop). Any other is 400, so URLs cannot be "
        "used to burn CPU. Empty: no resizing on read.",
        default=("150x150:cover", "320x320:cover", "320x0", "640x0", "1080x0"),
    )

    def image_specs(self) -> tuple[tuple[int, int, bool], ...]:
        """(alternate key, px, square) of each image rendition."""
        out = []
        for spec in self.image_renditions:
            parts = spec.split(":")
            try:
                key, px = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise ConfigError(f"transformer.image_renditions: {spec!r} is not <alternate key>:<px>[:square]") \
                    from None
            if len(parts) > 3 or (len(parts) == 3 and parts[2] != "square"):
                raise ConfigError(f"transformer.image_renditions: {spec!r} is not <alternate key>:<px>[:square]")
            out.append((key, px, len(parts) == 3))
        return tuple(out)

    def validate(self, section: str) -> None:
        JobWorkerConfig.validate(self, section)
        _require(1 <= self.recipe_version <= 1_000_000, f"{section}.recipe_version", "must be in 1..1000000")
        specs = self.image_specs()
        keys = [k for k, _, _ in specs]
        _require(all(1 <= k <= 255 for k in keys), f"{section}.image_renditions",
                 f"alternate keys must be in 1..255 (0 is the original; above 255 is video), got {keys}")
        _require(len(set(keys)) == len(keys), f"{section}.image_renditions", f"names an alternate key twice: {keys}")
        _require(all(16 <= px <= 8192 for _, px, _ in specs), f"{section}.image_renditions",
                 "sizes must be in 16..8192 px")
        _require(1 <= self.jpeg_quality <= 95, f"{section}.jpeg_quality", "must be in 1..95")
        _require(self.max_pixels >= 1_000_000, f"{section}.max_pixels", "must be >= 1000000")
        _require(self.max_source_bytes >= 1024, f"{section}.max_source_bytes", "must be >= 1024")
        _require(self.call_timeout_s > 0, f"{section}.call_timeout_s", "must be > 0")
        _require(bool(self.video_rungs) and all(16 <= h <= 4320 for h in self.video_rungs),
                 f"{section}.video_rungs", f"must be heights in 16..4320, got {list(self.video_rungs)}")
        _require(0.5 <= self.segment_s <= 30, f"{section}.segment_s", "must be in 0.5..30 seconds")
        _require(self.video_preset in X264_PRESETS, f"{section}.video_preset",
                 f"must be one of {', '.join(X264_PRESETS)}, got {self.video_preset!r}")
        _require(self.max_video_s > 0, f"{section}.max_video_s", "must be > 0")
        for box in self.on_read_sizes:
            try:
                parse_box(box)
            except ValueError as exc:
                raise ConfigError(f"{section}.on_read_sizes: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class F4Config(ServiceConfig):
    """The warm tier: the front of one f4 cell (encode, read, delete)."""

    count: int = doc("f4 front processes `trenchcoat up` starts (one per cell).", default=1)
    port: int = doc("gRPC port.", default=7600)
    metrics_port: int = doc("Prometheus /metrics port.", default=9600)
    storage_endpoints: tuple[str, ...] = doc(
        "The cell's storage nodes (host:port). Empty: cluster.host with f4_storage.port + i "
        "for each of f4_storage.count nodes.",
        default=(),
    )
    keystore_endpoint: str = doc("The cell's key store (host:port). Empty: cluster.host and f4_keystore.port.",
                                 default="")
    backoff_endpoints: tuple[str, ...] = doc(
        "The cell's backoff nodes (host:port), which rebuild what a warm read could not read. "
        "Empty: cluster.host with f4_backoff.port + i for each of f4_backoff.count nodes; none "
        "at all: the front rebuilds itself.",
        default=(),
    )
    rebuilder_endpoint: str = doc("The cell's rebuilder (host:port), for `trenchcoat warm`. Empty: cluster.host "
                                  "and f4_rebuilder.port.", default="")
    endpoint: str = doc("This cell's front (host:port), which caches read warm volumes from and the "
                        "Directory's leader moves volumes into. Empty: cluster.host and port.", default="")
    cells: tuple[str, ...] = doc(
        "The region's f4 cells by name (each storage node says which it is in: f4_storage.cell). "
        "Empty: one cell. Three: XOR geo-replication: volumes are encoded into the first two "
        "in pairs, one of each pair in each, and the third keeps the XOR of every pair's "
        "blocks, so a whole cell lost is read from the buddy and the XOR (2.1x on disk, not "
        "2.8x for two full copies).",
        default=(),
    )
    rebuild_bytes_per_s: int = doc(
        "Most bytes a second a whole-block rebuild reads from surviving blocks (about 10x what "
        "it writes), so rebuilds never starve live reads.",
        default=32 * 1024 * 1024,
    )
    cell_bytes: int = doc(
        "Bytes of one block in one row of a stripe: a warm blob no larger than this is one or "
        "two range reads of data blocks.",
        default=1024 * 1024,
    )
    rows: int = doc(
        "Rows in a stripe: each block holds up to rows x cell_bytes, a stripe 10 times that "
        "of data. An encode holds one stripe's 14 blocks in memory.",
        default=16,
    )
    call_timeout_s: float = doc("Deadline of each call to a storage node, the key store or a hot store.",
                                default=10.0)
    hedge_s: float = doc(
        "A warm read's range read of a data block slower than this is given up and the range "
        "rebuilt from 10 other blocks instead. Keep it well under cache.store_timeout_s.",
        default=0.5,
    )
    migrate: bool = doc(
        "The Directory's leader moves aged sealed volumes into this cell (EncodeVolume at "
        "the f4 front on f4.port) and frees their hot replicas.",
        default=True,
    )
    warm_after_s: float = doc(
        "A read-only volume this old (since its creation) is moved into f4 even if not full; a "
        "full one moves as soon as it is read-only. Months in production, seconds in tests.",
        default=30 * 24 * 3600.0,
    )
    free_after_s: float = doc(
        "Seconds between a volume turning warm and its hot replicas being freed: every cache "
        "learns of the move first (keep it above directory.refresh_interval_s).",
        default=30.0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(0 < self.hedge_s < self.call_timeout_s, f"{section}.hedge_s", "must be > 0 and < call_timeout_s")
        _require(self.warm_after_s > 0, f"{section}.warm_after_s", "must be > 0")
        _require(self.free_after_s >= 0, f"{section}.free_after_s", "must be >= 0")
        _require(self.cell_bytes >= 1, f"{section}.cell_bytes", "must be >= 1")
        _require(self.rows >= 1, f"{section}.rows", "must be >= 1")
        _require(self.call_timeout_s > 0, f"{section}.call_timeout_s", "must be > 0")
        for endpoint in self.storage_endpoints:
            _require_host_port(endpoint, f"{section}.storage_endpoints")
        if self.keystore_endpoint:
            _require_host_port(self.keystore_endpoint, f"{section}.keystore_endpoint")
        for endpoint in self.backoff_endpoints:
            _require_host_port(endpoint, f"{section}.backoff_endpoints")
        if self.rebuilder_endpoint:
            _require_host_port(self.rebuilder_endpoint, f"{section}.rebuilder_endpoint")
        if self.endpoint:
            _require_host_port(self.endpoint, f"{section}.endpoint")
        _require(self.rebuild_bytes_per_s > 0, f"{section}.rebuild_bytes_per_s", "must be > 0")
        _require(len(self.cells) in (0, 1, 3), f"{section}.cells",
                 f"names one cell or three (two for data, one for their XOR), got {list(self.cells)}")
        _require(len(set(self.cells)) == len(self.cells) and all(self.cells), f"{section}.cells",
                 f"names must be distinct and not empty, got {list(self.cells)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4StorageConfig(ServiceConfig):
    """f4 storage nodes: blocks of encoded stripes on local disk, served as byte ranges."""

    count: int = doc("Storage node processes `trenchcoat up` starts (node i gets node_id i + 1 and one failure "
                     "domain, f4-node-<node_id>): 14 make one cell, one block of each stripe a node.", default=14)
    port: int = doc("gRPC port of the first storage node; node i listens on port + i.", default=7620)
    metrics_port: int = doc("/metrics port of the first storage node; node i uses metrics_port + i.",
                            default=9620)
    node_id: int = doc("This node's id, unique in the cell (its data directory is named after it). 0: the "
                       "ordinal of the StatefulSet pod this runs in, plus 1.", default=1)
    advertise: str = doc("host:port this node names itself by in block listings. Empty: cluster.host and port.",
                         default="")
    domains: tuple[str, ...] = doc(
        "Failure domains this node keeps blocks for, one block directory each "
        "(<cluster.data_dir>/f4-storage-<node_id>/<domain>/). One in production (the node's "
        "rack); several let a whole cell run on a small machine. Empty: one, f4-node-<node_id>.",
        default=(),
    )
    cell: str = doc("The f4 cell this node is in (one of f4.cells; empty in a region of one cell).", default="")
    io_threads: int = doc("Threads doing the node's disk reads, writes and syncs.", default=8)
    scrub_interval_s: float = doc("Seconds between the ends and starts of background scrubs of every block.",
                                  default=3600.0)
    scrub_bytes_per_s: int = doc("Most bytes a second a scrub reads, so it never crowds out reads.",
                                 default=16 * 1024 * 1024)

    def domain_names(self) -> tuple[str, ...]:
        return self.domains or (f"f4-node-{self.node_id}",)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(1 <= self.node_id <= 2**32 - 1, f"{section}.node_id", "must be in 1..4294967295")
        if self.advertise:
            _require_host_port(self.advertise, f"{section}.advertise")
        _require(len(set(self.domain_names())) == len(self.domain_names()), f"{section}.domains",
                 f"names a domain twice: {list(self.domains)}")
        bad = [d for d in self.domain_names() if not d or "/" in d or d.startswith(".")]
        _require(not bad, f"{section}.domains", f"must be directory names, got {bad}")
        _require(1 <= self.io_threads <= 256, f"{section}.io_threads", "must be in 1..256")
        _require(self.scrub_interval_s > 0, f"{section}.scrub_interval_s", "must be > 0")
        _require(self.scrub_bytes_per_s > 0, f"{section}.scrub_bytes_per_s", "must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4KeyStoreConfig(ServiceConfig):
    """f4's key store: one key per warm blob, in PostgreSQL (postgres.dsn); delete = discard."""

    count: int = doc("Key store processes `trenchcoat up` starts (one per cell: it caches keys).", default=1)
    port: int = doc("gRPC port.", default=7650)
    metrics_port: int = doc("Prometheus /metrics port.", default=9650)
    cache_entries: int = doc("Keys (and discarded-key tombstones) kept in RAM, least recently used out first.",
                             default=1_000_000)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(self.count <= 1, f"{section}.count",
                 "must be 0 or 1: a cell has one key store, so a discard is seen by every read at once")
        _require(self.cache_entries >= 0, f"{section}.cache_entries", "must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4BackoffConfig(ServiceConfig):
    """f4 backoff nodes: rebuild the byte range a warm read could not read (its block's node
    down, slow or damaged) from the same range of 10 other blocks, off the front's CPU."""

    count: int = doc("Backoff node processes `trenchcoat up` starts.", default=1)
    port: int = doc("gRPC port of the first backoff node; node i listens on port + i.", default=7660)
    metrics_port: int = doc("/metrics port of the first backoff node; node i uses metrics_port + i.",
                            default=9660)
    call_timeout_s: float = doc("Deadline of each range read from a storage node.", default=5.0)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(self.call_timeout_s > 0, f"{section}.call_timeout_s", "must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4RebuilderConfig(ServiceConfig):
    """The f4 rebuilder of a cell: rebuilds whole blocks lost or damaged for longer than
    grace_s onto a healthy node, throttled to f4.rebuild_bytes_per_s, resumable."""

    count: int = doc("Rebuilder processes `trenchcoat up` starts (one per cell).", default=1)
    port: int = doc("gRPC port.", default=7680)
    metrics_port: int = doc("Prometheus /metrics port.", default=9680)
    grace_s: float = doc(
        "Seconds a block may stay lost (its node silent) or damaged (a checksum failed, the "
        "file is gone) before it is rebuilt: a node back within it costs no rebuild.",
        default=900.0,
    )
    scan_interval_s: float = doc("Seconds between scans of every storage node's blocks.", default=30.0)
    step_bytes: int = doc("Bytes of a block rebuilt per step: the grain of the throttle and of the journal a "
                          "restarted rebuilder carries on from.", default=1024 * 1024)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(self.step_bytes >= 1, f"{section}.step_bytes", "must be >= 1")
        _require(self.count <= 1, f"{section}.count",
                 "must be 0 or 1: one rebuilder per cell, so two never rebuild one block at once")
        _require(self.grace_s >= 0, f"{section}.grace_s", "must be >= 0")
        _require(self.scan_interval_s > 0, f"{section}.scan_interval_s", "must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedConfig(ServiceConfig):
    """Posts, follows, fan-out and home feeds."""

    port: int = doc("gRPC port.", default=7700)
    metrics_port: int = doc("Prometheus /metrics port.", default=9700)
    workers: int = doc(
        "Processes of each feed process sharing its ports (SO_REUSEPORT), one core each; the first "
        "starts the others and serves /metrics for all.",
        default=1,
    )
    router_endpoints: tuple[str, ...] = doc(
        "MediaService addresses (host:port) the feed checks posts and hydrates through. "
        "Empty: cluster.host with router.port + i for each of router.count processes.",
        default=(),
    )
    timeline_max: int = doc("Entries a home timeline keeps in Redis (older ones come from PostgreSQL).",
                            default=800)
    celebrity_threshold: int = doc(
        "Authors with at least this many followers are not fanned out on write: their posts "
        "are merged into followers' feeds at read time. Decided per post when it is made.",
        default=10_000,
    )
    celebrity_recent: int = doc("Posts kept in each celebrity's shared recent list.", default=200)
    backfill_posts: int = doc("A new follow pushes at most this many of the followee's recent posts.",
                              default=100)
    page_size: int = doc("Entries in a feed page when the request does not say.", default=20)
    max_page_size: int = doc("Most entries a feed page may ask for.", default=200)
    metadata_ttl_s: float = doc("Seconds hydrated facts (caption, media info) stay in the metadata cache.",
                                default=300.0)
    lease_period_s: float = doc(
        "A metadata-cache miss's lease lasts this long: at most one BatchStat per media_id "
        "per period, however many readers miss at once.",
        default=10.0,
    )
    lease_wait_s: float = doc(
        "Longest a reader waits for another's lease on hydrated facts before it is told to retry.",
        default=2.0,
    )
    sweep_interval_s: float = doc("Seconds between sweeps for posts whose fan-out never finished.",
                                  default=10.0)
    sweep_after_s: float = doc(
        "A post whose fan-out has not finished this long after it was made is enqueued again "
        "(a lost job, a Redis restart); the follow-up of a follow, unfollow or post delete "
        "that its request did not finish in this long is finished by the intent sweeper.",
        default=30.0,
    )
    intent_interval_s: float = doc(
        "Seconds between the intent sweeper's passes over due follow-ups of follows, unfollows "
        "and post deletes whose requests could not finish them (Redis or the router away); a "
        "failed one is retried after a backoff of 1 s doubling to 30 s.",
        default=1.0,
    )
    call_timeout_s: float = doc(
        "Deadline of each call to a router's MediaService (checking a post's media, hydrating, "
        "deleting). Keep it above postgres.timeout_s, so a router's own answer (naming what it "
        "waited for) arrives first. PostgreSQL and Redis calls are bounded by postgres.timeout_s "
        "and redis.timeout_s.",
        default=5.0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        _require(1 <= self.workers <= 256, f"{section}.workers", f"must be in 1..256, got {self.workers}")
        for endpoint in self.router_endpoints:
            _require_host_port(endpoint, f"{section}.router_endpoints")
        _require(self.timeline_max >= 10, f"{section}.timeline_max", "must be >= 10")
        _require(self.celebrity_threshold >= 1, f"{section}.celebrity_threshold", "must be >= 1")
        _require(self.celebrity_recent >= 10, f"{section}.celebrity_recent", "must be >= 10")
        _require(self.backfill_posts >= 0, f"{section}.backfill_posts", "must be >= 0")
        _require(1 <= self.page_size <= self.max_page_size, f"{section}.page_size",
                 "must be in 1..max_page_size")
        _require(self.max_page_size <= 1000, f"{section}.max_page_size", "must be at most 1000")
        _require(self.metadata_ttl_s > 0, f"{section}.metadata_ttl_s", "must be > 0")
        _require(self.lease_period_s > 0, f"{section}.lease_period_s", "must be > 0")
        _require(0 < self.lease_wait_s <= self.lease_period_s, f"{section}.lease_wait_s",
                 "must be > 0 and at most lease_period_s")
        _require(self.sweep_interval_s > 0, f"{section}.sweep_interval_s", "must be > 0")
        _require(self.sweep_after_s > 0, f"{section}.sweep_after_s", "must be > 0")
        _require(self.intent_interval_s > 0, f"{section}.intent_interval_s", "must be > 0")
        _require(self.call_timeout_s > 0, f"{section}.call_timeout_s", "must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutConfig(JobWorkerConfig):
    """Fan-out workers: processes that push posts into followers' timelines, fed by a
    Redis stream (at-least-once, reclaimed when a worker dies, dead-lettered when a job
    keeps failing)."""

    count: int = doc("Fan-out worker processes `trenchcoat up` starts.", default=2)
    port: int = doc("gRPC port (health) of the first worker; worker i listens on port + i.", default=7720)
    metrics_port: int = doc("/metrics port of the first worker; worker i uses metrics_port + i.", default=9720)
    batch_size: int = doc("Followers read from PostgreSQL and written to Redis per pipelined batch.",
                          default=1000)

    def validate(self, section: str) -> None:
        JobWorkerConfig.validate(self, section)
        _require(10 <= self.batch_size <= 100_000, f"{section}.batch_size", "must be in 10..100000")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole cluster config: one section per part."""

    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    cdn: CdnConfig = field(default_factory=CdnConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    f4: F4Config = field(default_factory=F4Config)
    f4_storage: F4StorageConfig = field(default_factory=F4StorageConfig)
    f4_keystore: F4KeyStoreConfig = field(default_factory=F4KeyStoreConfig)
    f4_backoff: F4BackoffConfig = field(default_factory=F4BackoffConfig)
    f4_rebuilder: F4RebuilderConfig = field(default_factory=F4RebuilderConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    fanout: FanoutConfig = field(default_factory=FanoutConfig)

    def services(self) -> dict[str, ServiceConfig]:
        """The gRPC service sections by name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), ServiceConfig)
        }

    def validate(self) -> None:
        """Checks every section, then that no two processes' ports collide."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if isinstance(section, ServiceConfig):
                section.validate(f.name)
            else:
                section.validate()
        owners: dict[int, str] = {}
        for name, service in self.services().items():
            for key in service.port_keys():
                base = getattr(service, key)
                for i in range(service.count):
                    owner = f"{name}.{key}" + (f" + {i}" if i else "")
                    clash = owners.setdefault(base + i, owner)
                    _require(
                        clash == owner,
                        f"{name}.{key}",
                        f"port {base + i} ({owner}) is also {clash}",
                    )

    def directory_endpoints(self) -> tuple[str, ...]:
        """Where the Directory processes listen (router.directory_endpoints, or derived)."""
        if self.router.directory_endpoints:
            return self.router.directory_endpoints
        d = self.directory
        return tuple(f"{self.cluster.host}:{d.port + i}" for i in range(max(d.count, 1)))

    def cache_endpoints(self) -> tuple[str, ...]:
        """Where the caches listen, cache id i + 1 at position i."""
        if self.router.cache_endpoints:
            return self.router.cache_endpoints
        c = self.cache
        return tuple(f"{self.cluster.host}:{c.port + i}" for i in range(max(c.count, 1)))

    def cache_http_endpoints(self) -> tuple[str, ...]:
        """Where the caches serve photo URLs over HTTP (host:port), cache id i + 1 at
        position i: what the CDN pulls from."""
        if self.cdn.cache_endpoints:
            return self.cdn.cache_endpoints
        c = self.cache
        return tuple(f"{self.cluster.host}:{c.http_port + i}" for i in range(max(c.count, 1)))

    def transformer_endpoints(self) -> tuple[str, ...]:
        """Where the transformer workers' TransformerService listens (cache.transformer_endpoints,
        or derived)."""
        if self.cache.transformer_endpoints:
            return self.cache.transformer_endpoints
        t = self.transformer
        return tuple(f"{self.cluster.host}:{t.port + i}" for i in range(t.count))

    def router_endpoints(self) -> tuple[str, ...]:
        """Where the routers' MediaService listens (feed.router_endpoints, or derived)."""
        if self.feed.router_endpoints:
            return self.feed.router_endpoints
        r = self.router
        return tuple(f"{self.cluster.host}:{r.port + i}" for i in range(max(r.count, 1)))

    def f4_storage_endpoints(self) -> tuple[str, ...]:
        """The f4 cell's storage nodes (f4.storage_endpoints, or derived)."""
        if self.f4.storage_endpoints:
            return self.f4.storage_endpoints
        s = self.f4_storage
        return tuple(f"{self.cluster.host}:{s.port + i}" for i in range(s.count))

    def f4_endpoint(self) -> str:
        """The f4 front the caches read warm volumes from (f4.endpoint, or derived)."""
        return self.f4.endpoint or f"{self.cluster.host}:{self.f4.port}"

    def f4_keystore_endpoint(self) -> str:
        return self.f4.keystore_endpoint or f"{self.cluster.host}:{self.f4_keystore.port}"

    def f4_backoff_endpoints(self) -> tuple[str, ...]:
        """The cell's backoff nodes (f4.backoff_endpoints, or derived; may be none)."""
        if self.f4.backoff_endpoints:
            return self.f4.backoff_endpoints
        b = self.f4_backoff
        return tuple(f"{self.cluster.host}:{b.port + i}" for i in range(b.count))

    def f4_rebuilder_endpoint(self) -> str:
        return self.f4.rebuilder_endpoint or f"{self.cluster.host}:{self.f4_rebuilder.port}"

    def store_address(self) -> str:
        """The address this store process advertises."""
        return self.store.advertise or f"{self.cluster.host}:{self.store.port}"

    def store_http_address(self, bound_port: int) -> str:
        """The address this store process advertises for its HTTP needle reads, given the
        port it bound (http_port, or the one taken for 0)."""
        return self.store.http_advertise or f"{self.cluster.host}:{bound_port}"


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Reads the config file (defaults when ``path`` is None), applies environment
    overrides from ``env`` and validates the result."""
    env = {} if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    overrides = _env_overrides(env)
    config = _build(Config, raw, overrides, origin=str(path) if path else "defaults")
    config = _from_ordinal(config, env.get("HOSTNAME") or socket.gethostname())
    config.validate()
    return config


def pod_ordinal(hostname: str) -> int | None:
    """The ordinal of a StatefulSet pod from its host name (``store-3`` -> 3), or None."""
    match = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?-(\d+)", hostname)
    return int(match.group(2)) if match else None


def _from_ordinal(config: Config, hostname: str) -> Config:
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


def default_path(env: Mapping[str, str]) -> str | None:
    """The config file to use when none is named: $TRENCHCOAT_CONFIG, else
    ./trenchcoat.toml if present, else None (built-in defaults)."""
    if env.get(CONFIG_PATH_ENV):
        return env[CONFIG_PATH_ENV]
    return "trenchcoat.toml" if Path("trenchcoat.toml").is_file() else None


def env_key(section: str, key: str) -> str:
    """The environment variable overriding ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}{ENV_SEPARATOR}{key.upper()}"


def describe() -> list[tuple[str, str, str]]:
    """(section.key, default as TOML, doc) for every key: the config reference."""
    rows = []
    for section in dataclasses.fields(Config):
        cls = _section_type(section)
        instance = cls()
        for f in dataclasses.fields(cls):
            rows.append(
                (f"{section.name}.{f.name}", to_toml(getattr(instance, f.name)), f.metadata["doc"])
            )
    return rows


EXAMPLE_PREAMBLE = """\
# trenchcoat cluster config: one file for the whole cluster, a section per service.
#
# Every process reads this file once at start and takes its own section. An environment
# variable TRENCHCOAT_<SECTION>__<KEY> overrides one key, e.g.
#   TRENCHCOAT_STORE__PORT=7301  TRENCHCOAT_ETCD__ENDPOINTS=10.0.0.5:2379,10.0.0.6:2379
# (lists from the environment are comma-separated). `trenchcoat up` gives each process its
# identity (ports, a store's machine_id and rack) that way, as Kubernetes does.
#
# Use it: cp trenchcoat.example.toml trenchcoat.toml (read from the current directory), or
# pass --config FILE, or set TRENCHCOAT_CONFIG=FILE. Unknown keys and bad values are errors
# that name the key. Every value below is the built-in default.
"""


def example_toml() -> str:
    """The commented example config (``trenchcoat config --example``): every key, its
    default and its meaning. ``trenchcoat.example.toml`` is exactly this."""
    import textwrap

    lines = [EXAMPLE_PREAMBLE.rstrip("\n")]
    for section in dataclasses.fields(Config):
        cls = _section_type(section)
        instance = cls()
        about = " ".join((cls.__doc__ or "").split())
        lines += ["", *textwrap.wrap(about, 88, initial_indent="# ", subsequent_indent="# "), f"[{section.name}]"]
        for f in dataclasses.fields(cls):
            lines += [f"# {line}" for line in textwrap.wrap(f.metadata["doc"], 88)]
            lines.append(f"{f.name} = {to_toml(getattr(instance, f.name))}")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The config reference as a Markdown table (kept in README.md)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{key}` | `{default}` | {text.replace('|', '/')} |" for key, default, text in describe()]
    return "\n".join(rows) + "\n"


def to_toml(value: Any) -> str:
    """Formats a config value as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(to_toml(v) for v in value) + "]"
    return repr(value)


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition(ENV_SEPARATOR)
        out.setdefault(section.lower(), {})[key.lower()] = (value, name)
    return out


def _build(
    cls: type,
    raw: dict[str, Any],
    overrides: dict[str, dict[str, tuple[str, str]]],
    origin: str,
) -> Config:
    sections = {f.name: f for f in dataclasses.fields(cls)}
    for name in list(raw) + list(overrides):
        if name not in sections:
            where = _env_names(overrides.get(name, {})) or origin
            raise ConfigError(
                f"unknown section [{name}] (in {where}); known sections: {', '.join(sections)}"
            )
    built = {}
    for name, f in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table, got {type(table).__name__}")
        built[name] = _build_section(
            _section_type(f), name, table, overrides.get(name, {}), origin
        )
    return cls(**built)


def _build_section(
    cls: type,
    section: str,
    table: dict[str, Any],
    overrides: dict[str, tuple[str, str]],
    origin: str,
) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(_unknown_key(section, key, fields, origin))
        values[key] = _coerce(hints[key], value, f"{section}.{key}", origin)
    for key, (text, var) in overrides.items():
        if key not in fields:
            raise ConfigError(_unknown_key(section, key, fields, var))
        values[key] = _parse_env(hints[key], text, f"{section}.{key}", var)
    return cls(**values)


def _unknown_key(section: str, key: str, fields: Mapping[str, Any], where: str) -> str:
    return f"{section}.{key}: unknown key (in {where}); known keys: {', '.join(fields)}"


def _coerce(hint: Any, value: Any, key: str, origin: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {value!r} (in {origin})")

    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong("an integer")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if item is int:
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise wrong("a list of integers")
            return tuple(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return tuple(value)
    raise TypeError(f"config field {key} has unsupported type {hint}")


def _parse_env(hint: Any, text: str, key: str, var: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {text!r} (from {var})")

    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise wrong("true or false")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise wrong("an integer") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise wrong("a number") from None
    if hint is str:
        return text
    if typing.get_origin(hint) is tuple:
        parts = tuple(part.strip() for part in text.split(",") if part.strip())
        if typing.get_args(hint)[0] is int:
            try:
                return tuple(int(part) for part in parts)
            except ValueError:
                raise wrong("integers separated by commas") from None
        return parts
    raise TypeError(f"config field {key} has unsupported type {hint}")


def _section_type(f: dataclasses.Field[Any]) -> type:
    factory = f.default_factory
    assert isinstance(factory, type), f"section {f.name} needs a class as default_factory"
    return factory


def _env_names(overrides: Mapping[str, tuple[str, str]]) -> str:
    return ", ".join(var for _, var in overrides.values())


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def _require_host_port(value: str, key: str) -> None:
    host, sep, port = value.rpartition(":")
    _require(
        bool(sep) and bool(host) and port.isdigit() and 1 <= int(port) <= 65535,
        key,
        f"{value!r} is not host:port",
    )

