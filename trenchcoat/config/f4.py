"""The sections of the warm tier, one per kind of f4 process: [f4] (a cell's front, and the
cells of the region), [f4_storage], [f4_keystore], [f4_backoff], [f4_rebuilder]."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.config.checks import require
from trenchcoat.config.service import ServiceConfig, count_setting, port_setting
from trenchcoat.config.setting import HOST_PORT, Bounds, setting

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class F4Config(ServiceConfig):
    """The warm tier: the front of one f4 cell (encode, read, delete)."""

    count: int = count_setting("f4 front processes `trenchcoat up` starts (one per cell).", default=1)
    port: int = port_setting("gRPC port.", default=7600)
    metrics_port: int = port_setting("Prometheus /metrics port.", default=9600)
    storage_endpoints: tuple[str, ...] = setting(
        "The cell's storage nodes (host:port). Empty: cluster.host with f4_storage.port + i "
        "for each of f4_storage.count nodes.",
        default=(), each=HOST_PORT,
    )
    keystore_endpoint: str = setting("The cell's key store (host:port). Empty: cluster.host and f4_keystore.port.",
                                     default="", host_port=True, or_empty=True)
    backoff_endpoints: tuple[str, ...] = setting(
        "The cell's backoff nodes (host:port), which rebuild what a warm read could not read. "
        "Empty: cluster.host with f4_backoff.port + i for each of f4_backoff.count nodes; none "
        "at all: the front rebuilds itself.",
        default=(), each=HOST_PORT,
    )
    rebuilder_endpoint: str = setting("The cell's rebuilder (host:port), for `trenchcoat warm`. Empty: cluster.host "
                                      "and f4_rebuilder.port.", default="", host_port=True, or_empty=True)
    endpoint: str = setting("This cell's front (host:port), which caches read warm volumes from and the "
                            "Directory's leader moves volumes into. Empty: cluster.host and port.", default="",
                            host_port=True, or_empty=True)
    cells: tuple[str, ...] = setting(
        "The region's f4 cells by name (each storage node says which it is in: f4_storage.cell). "
        "Empty: one cell. Three: XOR geo-replication: volumes are encoded into the first two "
        "in pairs, one of each pair in each, and the third keeps the XOR of every pair's "
        "blocks, so a whole cell lost is read from the buddy and the XOR (2.1x on disk, not "
        "2.8x for two full copies).",
        default=(), distinct=True, each=Bounds(nonempty=True),
    )
    rebuild_bytes_per_s: int = setting(
        "Most bytes a second a whole-block rebuild reads from surviving blocks (about 10x what "
        "it writes), so rebuilds never starve live reads.",
        default=32 * MiB, gt=0,
    )
    cell_bytes: int = setting(
        "Bytes of one block in one row of a stripe: a warm blob no larger than this is one or "
        "two range reads of data blocks.",
        default=MiB, ge=1,
    )
    rows: int = setting(
        "Rows in a stripe: each block holds up to rows x cell_bytes, a stripe 10 times that "
        "of data. An encode holds one stripe's 14 blocks in memory.",
        default=16, ge=1,
    )
    call_timeout_s: float = setting("Deadline of each call to a storage node, the key store or a hot store.",
                                    default=10.0, gt=0)
    hedge_s: float = setting(
        "A warm read's range read of a data block slower than this is given up and the range "
        "rebuilt from 10 other blocks instead. Keep it well under cache.store_timeout_s.",
        default=0.5, gt=0,
    )
    migrate: bool = setting(
        "The Directory's leader moves aged sealed volumes into this cell (EncodeVolume at "
        "the f4 front on f4.port) and frees their hot replicas.",
        default=True,
    )
    warm_after_s: float = setting(
        "A read-only volume this old (since its creation) is moved into f4 even if not full; a "
        "full one moves as soon as it is read-only. Months in production, seconds in tests.",
        default=30 * 24 * 3600.0, gt=0,
    )
    free_after_s: float = setting(
        "Seconds between a volume turning warm and its hot replicas being freed: every cache "
        "learns of the move first (keep it above directory.refresh_interval_s).",
        default=30.0, ge=0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        require(self.hedge_s < self.call_timeout_s, f"{section}.hedge_s",
                f"must be < call_timeout_s ({self.call_timeout_s}), got {self.hedge_s}")
        require(len(self.cells) in (0, 1, 3), f"{section}.cells",
                f"names one cell or three (two for data, one for their XOR), got {list(self.cells)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4StorageConfig(ServiceConfig):
    """f4 storage nodes: blocks of encoded stripes on local disk, served as byte ranges."""

    count: int = count_setting("Storage node processes `trenchcoat up` starts (node i gets node_id i + 1 and one "
                               "failure domain, f4-node-<node_id>): 14 make one cell, one block of each stripe a "
                               "node.", default=14)
    port: int = port_setting("gRPC port of the first storage node; node i listens on port + i.", default=7620)
    metrics_port: int = port_setting("/metrics port of the first storage node; node i uses metrics_port + i.",
                                     default=9620)
    # 0 never reaches the check: the pod's ordinal fills it in first (identity.py).
    node_id: int = setting("This node's id, unique in the cell (its data directory is named after it). 0: the "
                           "ordinal of the StatefulSet pod this runs in, plus 1.", default=1, ge=1, le=2**32 - 1)
    advertise: str = setting("host:port this node names itself by in block listings. Empty: cluster.host and "
                             "port.", default="", host_port=True, or_empty=True)
    domains: tuple[str, ...] = setting(
        "Failure domains this node keeps blocks for, one block directory each "
        "(<cluster.data_dir>/f4-storage-<node_id>/<domain>/). One in production (the node's "
        "rack); several let a whole cell run on a small machine. Empty: one, f4-node-<node_id>.",
        default=(), distinct=True,
    )
    cell: str = setting("The f4 cell this node is in (one of f4.cells; empty in a region of one cell).",
                        default="", free="not checked against f4.cells (yet)")
    io_threads: int = setting("Threads doing the node's disk reads, writes and syncs.", default=8, ge=1, le=256)
    scrub_interval_s: float = setting("Seconds between the ends and starts of background scrubs of every block.",
                                      default=3600.0, gt=0)
    scrub_bytes_per_s: int = setting("Most bytes a second a scrub reads, so it never crowds out reads.",
                                     default=16 * MiB, gt=0)

    def domain_names(self) -> tuple[str, ...]:
        return self.domains or (f"f4-node-{self.node_id}",)

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        bad = [d for d in self.domain_names() if not d or "/" in d or d.startswith(".")]
        require(not bad, f"{section}.domains", f"must be directory names, got {bad}")


@dataclass(frozen=True, slots=True, kw_only=True)
class F4KeyStoreConfig(ServiceConfig):
    """f4's key store: one key per warm blob, in PostgreSQL (postgres.dsn); delete = discard."""

    count: int = count_setting("Key store processes `trenchcoat up` starts (one per cell: it caches keys).",
                               default=1, le=1,
                               why="a cell has one key store, so a discard is seen by every read at once")
    port: int = port_setting("gRPC port.", default=7650)
    metrics_port: int = port_setting("Prometheus /metrics port.", default=9650)
    cache_entries: int = setting("Keys (and discarded-key tombstones) kept in RAM, least recently used out first.",
                                 default=1_000_000, ge=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class F4BackoffConfig(ServiceConfig):
    """f4 backoff nodes: rebuild the byte range a warm read could not read (its block's node
    down, slow or damaged) from the same range of 10 other blocks, off the front's CPU."""

    count: int = count_setting("Backoff node processes `trenchcoat up` starts.", default=1)
    port: int = port_setting("gRPC port of the first backoff node; node i listens on port + i.", default=7660)
    metrics_port: int = port_setting("/metrics port of the first backoff node; node i uses metrics_port + i.",
                                     default=9660)
    call_timeout_s: float = setting("Deadline of each range read from a storage node.", default=5.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class F4RebuilderConfig(ServiceConfig):
    """The f4 rebuilder of a cell: rebuilds whole blocks lost or damaged for longer than
    grace_s onto a healthy node, throttled to f4.rebuild_bytes_per_s, resumable."""

    count: int = count_setting("Rebuilder processes `trenchcoat up` starts (one per cell).", default=1, le=1,
                               why="one rebuilder per cell, so two never rebuild one block at once")
    port: int = port_setting("gRPC port.", default=7680)
    metrics_port: int = port_setting("Prometheus /metrics port.", default=9680)
    grace_s: float = setting(
        "Seconds a block may stay lost (its node silent) or damaged (a checksum failed, the "
        "file is gone) before it is rebuilt: a node back within it costs no rebuild.",
        default=900.0, ge=0,
    )
    scan_interval_s: float = setting("Seconds between scans of every storage node's blocks.", default=30.0, gt=0)
    step_bytes: int = setting("Bytes of a block rebuilt per step: the grain of the throttle and of the journal a "
                              "restarted rebuilder carries on from.", default=MiB, ge=1)
