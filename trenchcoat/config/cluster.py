"""The sections of the cluster as a whole and of what it depends on: [cluster], [etcd],
[postgres], [redis], and the local cluster's [cdn] (nginx) and [prometheus]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trenchcoat.config.checks import Section, require
from trenchcoat.config.service import MAX_PORT
from trenchcoat.config.setting import HOST_PORT, Bounds, setting

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig(Section):
    """Settings for the whole cluster."""

    name: str = setting("Cluster name, shown by `trenchcoat up`.", default="local", nonempty=True)
    data_dir: str = setting(
        "Directory for all local state: volumes, private etcd/PostgreSQL/Redis data, logs.",
        default=".trenchcoat", nonempty=True,
    )
    host: str = setting("Address services bind and advertise.", default="127.0.0.1", nonempty=True)
    log_level: str = setting("Python log level: DEBUG, INFO, WARNING or ERROR.", default="INFO", choices=LOG_LEVELS)
    start_wait_s: float = setting(
        "Seconds a starting process keeps retrying a dependency it cannot reach (etcd, "
        "PostgreSQL) before it exits saying why. 0: it exits at once (`trenchcoat up` starts "
        "the dependencies first). Kubernetes starts pods in any order: k8s/base waits 100 s, "
        "within the startup probes' window.",
        default=0.0, ge=0, le=3600,
    )
    tls_dir: str = setting(
        "Directory of the cluster CA and the service identities (`trenchcoat certs` makes them; "
        "`trenchcoat up` on first start): every gRPC server serves mutual TLS only, checks each "
        "caller's role against the permission table, and every gRPC client presents its "
        "process's certificate (<role>.crt, <role>.key, ca.crt). Empty: <data_dir>/tls.",
        default="", free="a directory path; `trenchcoat certs` says what it must hold",
    )
    insecure: bool = setting(
        "Plaintext, unauthenticated gRPC: anyone who reaches a port may call any method. Only for "
        "a throwaway cluster on a private machine; every process logs a warning at start.",
        default=False,
    )

    def validate(self, section: str) -> None:
        require(not (self.insecure and self.tls_dir), f"{section}.insecure",
                f"is true while {section}.tls_dir is set ({self.tls_dir}): choose one (TLS, or plaintext)")

    def tls_directory(self) -> Path | None:
        """Where this cluster's certificates live; None when it runs insecure (plaintext)."""
        if self.insecure:
            return None
        return Path(self.tls_dir) if self.tls_dir else Path(self.data_dir) / "tls"


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcdConfig(Section):
    """Where Directory state, liveness leases and leader election live."""

    endpoints: tuple[str, ...] = setting(
        "etcd client endpoints as host:port. Empty: `trenchcoat up` starts a private etcd.",
        default=(), each=HOST_PORT,
    )
    timeout_s: float = setting(
        "Deadline of each call to etcd (directories, stores); past it the call fails UNAVAILABLE "
        "naming etcd and the next endpoint is tried on the next call.",
        default=3.0, gt=0,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresConfig(Section):
    """Where media metadata, posts and follows live."""

    dsn: str = setting(
        "libpq connection URI (with ?sslmode=verify-full&sslrootcert=<file> for TLS). Empty: `trenchcoat "
        "up` starts a private PostgreSQL (TLS only, a SCRAM password of its own).",
        default="", prefixes=("postgresql://", "postgres://"), or_empty=True,
    )
    shard_dsns: tuple[str, ...] = setting(
        "Further PostgreSQL instances (libpq URIs) holding logical shards of the media rows, "
        "besides postgres.dsn's; the shard map in etcd (`trenchcoat shards`) says which holds "
        "which. Empty: one instance, every shard on postgres.dsn's.",
        default=(), distinct=True, each=Bounds(prefixes=("postgresql://", "postgres://")),
    )
    local_instances: int = setting(
        "PostgreSQL instances `trenchcoat up` starts when postgres.dsn is empty, the shards split "
        "evenly over them on a fresh cluster (a cluster made with fewer keeps every shard where "
        "its rows are).",
        default=2, ge=1, le=16,
    )
    timeout_s: float = setting(
        "Deadline of each piece of work a service does in PostgreSQL (routers, the feed and "
        "its workers): waiting for a pooled connection and every statement of it. Past it the "
        "request fails UNAVAILABLE naming PostgreSQL. Connecting at start may take 3 times this.",
        default=3.0, gt=0,
    )

    def instances(self) -> tuple[str, ...]:
        """The DSN of every instance holding logical shards (postgres.dsn's first)."""
        return (self.dsn, *self.shard_dsns) if self.dsn else self.shard_dsns


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig(Section):
    """Where timelines, caches and job streams live."""

    url: str = setting(
        "redis:// URL, or rediss:// over TLS (user and password before the host; ?ssl_ca_certs=<file> "
        "names the CA to verify the server with). Empty: `trenchcoat up` starts a private Redis (TLS, "
        "an ACL user and password of its own).", default="",
        prefixes=("redis://", "rediss://", "unix://"), or_empty=True)
    cluster: bool = setting(
        "Whether redis.url names a node of a Redis Cluster (the services find the other nodes, "
        "send each key to its slot's primary and follow failovers) rather than a single Redis. "
        "`trenchcoat up` sets it for the Redis it starts (redis.local_cluster).", default=False)
    local_cluster: bool = setting(
        "Whether the Redis `trenchcoat up` starts (redis.url empty) is a Redis Cluster of three "
        "primaries, each with a replica, rather than a single Redis.", default=True)
    timeout_s: float = setting(
        "Deadline of each command (or pipeline) a service sends Redis (the feed and its "
        "workers), waiting for a pooled connection and connecting included. Past it the request "
        "fails UNAVAILABLE naming Redis.",
        default=5.0, ge=1, why="a fan-out worker waits up to 0.5 s for jobs in one command",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig(Section):
    """The Prometheus of the local cluster: `trenchcoat up` starts one (Debian's
    `prometheus`) scraping every process's /metrics, with the rules of
    k8s/observability/rules.yml."""

    enabled: bool = setting("Whether `trenchcoat up` starts Prometheus.", default=True)
    port: int = setting("Prometheus's HTTP port (its UI and API).", default=9090, ge=1, le=MAX_PORT)
    scrape_interval_s: float = setting("Seconds between two scrapes of every process (and rule evaluations).",
                                       default=5.0, ge=1, le=300)
    retention_hours: int = setting("Hours of samples Prometheus keeps on disk (under cluster.data_dir).",
                                   default=48, ge=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CdnConfig(Section):
    """The pull CDN of the local cluster: nginx in front of the caches' photo HTTP ports. In
    production a commercial CDN (or your edge caches) sits here instead."""

    enabled: bool = setting("Whether `trenchcoat up` starts nginx as the CDN.", default=True)
    port: int = setting("HTTP port of the CDN (router.cdn_base_url should point at it).", default=8080,
                        ge=1, le=MAX_PORT)
    metrics_port: int = setting("Prometheus /metrics port of the CDN: requests by cache status (hit, miss, ...), "
                                "bytes, seconds, from nginx's access log.", default=9080, ge=1, le=MAX_PORT)
    ttl_s: int = setting(
        "Seconds the CDN keeps a photo; a deleted photo is still served from the CDN for at "
        "most this long (nginx has no purge; a production CDN's purge API would be called).",
        default=60, ge=1,
    )
    not_found_ttl_s: int = setting("Seconds the CDN remembers a 404.", default=5, ge=0)
    max_bytes: int = setting("Disk the CDN's cache may use.", default=1024 * 1024 * 1024,
                             ge=1024 * 1024, why="1 MiB")
    cache_endpoints: tuple[str, ...] = setting(
        "The caches' photo HTTP addresses the CDN pulls from (host:port), cache id i + 1 at "
        "position i. Empty: cluster.host with cache.http_port + i for each of cache.count caches.",
        default=(), each=HOST_PORT,
    )

    def validate(self, section: str) -> None:
        require(self.metrics_port != self.port, f"{section}.metrics_port",
                f"must not be {section}.port, got {self.metrics_port}")
