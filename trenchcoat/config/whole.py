"""The whole config (``Config``): one section per part of the cluster, in the order the
example file shows them; the checks across sections (no two processes on one port); and
the endpoints derived from several sections (where the directories, caches, ... listen
when no section names them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trenchcoat.config.cache_router import CacheConfig, RouterConfig
from trenchcoat.config.checks import Section, check_section, require
from trenchcoat.config.cluster import (
    CdnConfig,
    ClusterConfig,
    EtcdConfig,
    PostgresConfig,
    PrometheusConfig,
    RedisConfig,
)
from trenchcoat.config.directory_store import DirectoryConfig, StoreConfig
from trenchcoat.config.f4 import (
    F4BackoffConfig,
    F4Config,
    F4KeyStoreConfig,
    F4RebuilderConfig,
    F4StorageConfig,
)
from trenchcoat.config.feed import FanoutConfig, FeedConfig
from trenchcoat.config.service import ServiceConfig
from trenchcoat.config.transformer import TransformerConfig


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
            check_section(f.name, getattr(self, f.name))
        owners: dict[int, str] = {}
        for name, service in self.services().items():
            for key in service.port_keys():
                base = getattr(service, key)
                for i in range(service.count):
                    owner = f"{name}.{key}" + (f" + {i}" if i else "")
                    clash = owners.setdefault(base + i, owner)
                    require(
                        clash == owner,
                        f"{name}.{key}",
                        f"port {base + i} ({owner}) is also {clash}",
                    )
    def directory_endpoints(self) -> tuple[str, ...]:
        """Where the Directory processes listen (directory.endpoints, or derived)."""
        if self.directory.endpoints:
            return self.directory.endpoints
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
        """Where the routers' MediaService listens (router.endpoints, or derived)."""
        if self.router.endpoints:
            return self.router.endpoints
        r = self.router
        return tuple(f"{self.cluster.host}:{r.port + i}" for i in range(max(r.count, 1)))

    def feed_endpoints(self) -> tuple[str, ...]:
        """Where the feed processes listen (derived: nothing but the CLI reads them)."""
        f = self.feed
        return tuple(f"{self.cluster.host}:{f.port + i}" for i in range(max(f.count, 1)))

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


def section_types() -> dict[str, type[Section]]:
    """Each section's name and class, in file order."""
    types: dict[str, type[Section]] = {}
    for f in dataclasses.fields(Config):
        factory = f.default_factory
        assert isinstance(factory, type) and issubclass(factory, Section), f"section {f.name} needs a Section class"
        types[f.name] = factory
    return types
