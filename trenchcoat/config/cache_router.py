"""The sections of the hot tier's front: [cache] (photo reads in front of the stores, the
CDN's origin) and [router] (MediaService, the front door: uploads, reads, deletes)."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.config.checks import require
from trenchcoat.config.service import ServiceConfig, port_setting
from trenchcoat.config.setting import HOST_PORT, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig(ServiceConfig):
    """The photo cache."""

    port: int = port_setting("gRPC port of the first cache; cache i (cache id i + 1) listens on port + i.",
                             default=7300)
    metrics_port: int = port_setting("/metrics port of the first cache; cache i uses metrics_port + i.",
                                     default=9300)
    http_port: int = port_setting(
        "Photo HTTP port of the first cache (GET/HEAD of photo URLs: what the CDN pulls); "
        "cache i uses http_port + i.",
        default=7380,
    )
    capacity_bytes: int = setting("Photo bytes one cache process keeps (LRU beyond).", default=256 * 1024 * 1024,
                                  ge=0)
    lease_period_s: float = setting(
        "A miss's lease lasts this long: one Store read per key per period; other readers "
        "of the key wait for it or get its kept answer (kept answers of photos not admitted "
        "take at most a quarter of capacity_bytes).",
        default=10.0, gt=0,
    )
    lease_wait_s: float = setting(
        "Longest a reader waits for another's lease before it is told to retry (UNAVAILABLE).",
        default=5.0, gt=0,
    )
    store_timeout_s: float = setting("Seconds one Store read may take before the next replica is tried.",
                                     default=3.0, gt=0)
    transformer_endpoints: tuple[str, ...] = setting(
        "Transformer workers a photo URL with a resize (`?w=&h=`) is transformed by (host:port). "
        "Empty: cluster.host with transformer.port + i for each of transformer.count workers.",
        default=(), each=HOST_PORT,
    )
    transform_timeout_s: float = setting("Seconds one resize on read may take at a transformer.", default=10.0,
                                         gt=0)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        require(self.lease_wait_s <= self.lease_period_s, f"{section}.lease_wait_s",
                f"must be at most lease_period_s ({self.lease_period_s}), got {self.lease_wait_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig(ServiceConfig):
    """The front door: MediaService over gRPC (uploads, reads and deletes by media_id, stats)."""

    port: int = port_setting("gRPC port.", default=7400)
    metrics_port: int = port_setting("Prometheus /metrics port.", default=9400)
    endpoints: tuple[str, ...] = setting(
        "Where every client of the routers' MediaService finds them (host:port): the feed, "
        "the transformer workers, the CLI. Empty: cluster.host with router.port + i for each "
        "of router.count processes. (Was feed.router_endpoints, still read with a warning.)",
        default=(), each=HOST_PORT,
    )
    workers: int = setting(
        "Processes of each router sharing its ports (SO_REUSEPORT), one core each; the first "
        "starts the others and serves /metrics for all.",
        default=1, ge=1, le=256,
    )
    max_upload_bytes: int = setting(
        "Largest object an upload may carry (at most store.max_needle_bytes).",
        default=32 * 1024 * 1024, ge=1,
    )
    replica_timeout_s: float = setting(
        "Seconds one replica write may take before the volume is given up for this upload.",
        default=5.0, gt=0,
    )
    cdn_base_url: str = setting("Base of photo URLs handed to clients (the CDN).", default="http://127.0.0.1:8080",
                                prefixes=("http://", "https://"))
    row_ttl_s: float = setting(
        "Seconds MediaService.Read trusts a metadata row it read (0: read PostgreSQL on every "
        "call). Photo URLs never read rows: the caches serve them.",
        default=1.0, ge=0, le=60,
    )
    cache_endpoints: tuple[str, ...] = setting(
        "Cache addresses as host:port, cache id i + 1 at position i. Empty: cluster.host "
        "with cache.port + i for each of cache.count processes.",
        default=(), each=HOST_PORT,
    )
    delete_retry_interval_s: float = setting(
        "Seconds between passes over the delete journal: deletes not yet flagged on every "
        "replica (one was down) or dropped from every cache are retried, with backoff.",
        default=2.0, gt=0,
    )
    delete_retry_max_s: float = setting(
        "Longest backoff between two attempts of one journalled delete (also how long a "
        "router holds an entry it is working on).",
        default=60.0, gt=0,
    )
    renditions: bool = setting(
        "Enqueue rendition jobs (for the transformer's workers, on redis.url) after each "
        "upload, and sweep for uploads whose renditions never finished.",
        default=True,
    )
    renditions_sweep_after_s: float = setting(
        "An upload whose renditions have not finished this long after it (or after its last "
        "sweep) has its job enqueued again (the first was lost, say, with a Redis restart).",
        default=120.0, ge=1,
    )
    renditions_sweep_interval_s: float = setting("Seconds between two sweeps for unfinished renditions.",
                                                 default=10.0, gt=0)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        require(self.delete_retry_max_s >= self.delete_retry_interval_s, f"{section}.delete_retry_max_s",
                f"must be >= delete_retry_interval_s ({self.delete_retry_interval_s}), "
                f"got {self.delete_retry_max_s}")
