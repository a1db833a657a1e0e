"""The cluster config: one TOML file with a section per service, read once at start.

Each process loads the whole file into typed, frozen dataclasses (``load``), takes its own
section and passes it down; nothing else reads the file or the environment. An
environment variable ``TRENCHCOAT_<SECTION>__<KEY>`` overrides one key
(``TRENCHCOAT_STORE__PORT=7301``); that is also how ``trenchcoat up`` and Kubernetes give
each process its identity. Unknown sections or keys, wrong types and bad values raise
``ConfigError`` naming the key and why.

Every key, its default and its meaning is in ``trenchcoat.example.toml`` at the repo root,
which loads to exactly the defaults here (a test keeps the two in step).

The package, a file an idea:
- ``setting.py``: a key's declaration, ``setting(doc, default=..., ge=..., ...)``: its doc
  and its bounds (``Bounds``) in the field's metadata;
- ``checks.py``: the one checker of declared bounds, and the ``Section`` base whose
  ``validate`` holds the hand-written checks relating several keys;
- the sections, each beside its checks: ``cluster.py`` (cluster, etcd, postgres, redis,
  cdn, prometheus), ``service.py`` (the keys every service shares; job workers'),
  ``directory_store.py``, ``cache_router.py``, ``transformer.py``, ``f4.py`` (its five
  kinds of process), ``feed.py`` (feed, fanout);
- ``whole.py``: ``Config``, every section, the checks across them (ports) and the
  endpoints derived from several;
- ``loader.py``: the file and the environment read into a ``Config`` (``load``);
- ``identity.py``: a Kubernetes pod's ordinal filling in a process's identity;
- ``docs.py``: the reference, the example file and README's table.
"""

from trenchcoat.config.cache_router import CacheConfig, RouterConfig
from trenchcoat.config.checks import Section
from trenchcoat.config.cluster import (
    CdnConfig,
    ClusterConfig,
    EtcdConfig,
    PostgresConfig,
    PrometheusConfig,
    RedisConfig,
)
from trenchcoat.config.directory_store import DirectoryConfig, StoreConfig
from trenchcoat.config.docs import (
    EXAMPLE_PREAMBLE,
    describe,
    example_toml,
    reference_markdown,
    to_toml,
)
from trenchcoat.config.f4 import (
    F4BackoffConfig,
    F4Config,
    F4KeyStoreConfig,
    F4RebuilderConfig,
    F4StorageConfig,
)
from trenchcoat.config.feed import FanoutConfig, FeedConfig
from trenchcoat.config.identity import pod_ordinal
from trenchcoat.config.loader import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    ENV_SEPARATOR,
    default_path,
    env_key,
    load,
)
from trenchcoat.config.service import JobWorkerConfig, ServiceConfig
from trenchcoat.config.setting import Bounds, setting
from trenchcoat.config.transformer import X264_PRESETS, TransformerConfig
from trenchcoat.config.whole import Config
from trenchcoat.errors import ConfigError

__all__ = [
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "ENV_SEPARATOR",
    "EXAMPLE_PREAMBLE",
    "X264_PRESETS",
    "Bounds",
    "CacheConfig",
    "CdnConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DirectoryConfig",
    "EtcdConfig",
    "F4BackoffConfig",
    "F4Config",
    "F4KeyStoreConfig",
    "F4RebuilderConfig",
    "F4StorageConfig",
    "FanoutConfig",
    "FeedConfig",
    "JobWorkerConfig",
    "PostgresConfig",
    "PrometheusConfig",
    "RedisConfig",
    "RouterConfig",
    "Section",
    "ServiceConfig",
    "StoreConfig",
    "TransformerConfig",
    "default_path",
    "describe",
    "env_key",
    "example_toml",
    "load",
    "pod_ordinal",
    "reference_markdown",
    "setting",
    "to_toml",
]
