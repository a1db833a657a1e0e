"""The sections of Haystack's volumes: [directory] (the volume map in etcd, its leader's
probes and repairs) and [store] (the machines holding the volume files)."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.config.checks import require
from trenchcoat.config.service import ServiceConfig, count_setting, port_setting
from trenchcoat.config.setting import HOST_PORT, Bounds, setting

MiB = 1024 * 1024
#: Largest volume file: the index stores offsets in 8-byte units in 32 bits.
MAX_VOLUME_BYTES = 32 * 1024**3
#: Largest needle: a write travels in one gRPC message (at most 80 MiB).
MAX_NEEDLE_BYTES = 64 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryConfig(ServiceConfig):
    """The volume directory. State lives in etcd; every process serves the API, the one
    elected leader also probes stores, grows, flips and repairs volumes."""

    count: int = count_setting("Directory processes `trenchcoat up` starts (one leads).", default=2)
    port: int = port_setting("gRPC port of the first directory; directory i listens on port + i.", default=7100)
    metrics_port: int = port_setting("/metrics port of the first directory; directory i uses metrics_port + i.",
                                     default=9100)
    endpoints: tuple[str, ...] = setting(
        "Where every client of the directories finds them (host:port): routers, caches, the "
        "f4 front, the CLI. Empty: cluster.host with directory.port + i for each of "
        "directory.count processes. (Was router.directory_endpoints, still read with a warning.)",
        default=(), each=HOST_PORT,
    )
    replicas: int = setting("Copies of every logical volume, each on a different rack.", default=3, ge=1, le=16)
    min_writable_volumes: int = setting(
        "The leader keeps at least this many logical volumes writable, creating new ones.",
        default=4, ge=1,
    )
    liveness_ttl_s: int = setting(
        "TTL of a store's etcd registration lease (it refreshes every third of it); a store "
        "silent this long is dead.",
        default=6, ge=2,
    )
    leader_ttl_s: int = setting(
        "TTL of the leader's etcd lease; another directory takes over within about this.",
        default=6, ge=2,
    )
    probe_interval_s: float = setting("Seconds between the leader's probes of every store.", default=2.0, gt=0)
    probe_failures: int = setting(
        "Consecutive failed probes after which a store's volumes turn read-only.", default=3, ge=1
    )
    refresh_interval_s: float = setting(
        "Seconds between reads of the volume map from etcd (changes reach WatchVolumes "
        "subscribers within this).",
        default=0.5, gt=0,
    )
    full_ratio: float = setting(
        "A logical volume whose largest replica is filled past this fraction turns read-only.",
        default=0.95, gt=0, le=1,
    )
    repair_chunk_bytes: int = setting("Chunk size of the export stream a repair copies with.", default=MiB,
                                      ge=4096)
    replace_after_s: float = setting(
        "A store down this long is lost for good: each volume it held gets a new replica on "
        "another store (a rack the volume does not use yet, when there is one), copied from a "
        "healthy replica. Its copies are freed if it comes back.",
        default=600.0, gt=0,
    )
    rereplicate_bytes_per_s: int = setting(
        "Most bytes a second one new replica is copied at, so live reads and uploads keep "
        "their latency while a lost store is replaced.",
        default=64 * MiB, ge=4096,
    )
    call_timeout_s: float = setting(
        "Deadline of a router's call to one directory process (allocating a volume, locating "
        "one, marking one read-only) before the next directory is tried.",
        default=3.0, gt=0,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig(ServiceConfig):
    """Haystack store machines."""

    count: int = count_setting("Store processes `trenchcoat up` starts.", default=6)
    port: int = port_setting("gRPC port of the first store; store i listens on port + i.", default=7200)
    metrics_port: int = port_setting("/metrics port of the first store; store i uses metrics_port + i.",
                                     default=9200)
    http_port: int = port_setting(
        "HTTP port of the first store's needle reads (GET /<logical_volume>,<photo>: what a "
        "cache reads a miss with); store i uses http_port + i. 0: any free port (the one "
        "taken is registered).",
        default=7280, free_port=True,
    )
    racks: tuple[str, ...] = setting(
        "Racks (failure domains) `trenchcoat up` spreads stores over: store i is on "
        "racks[i % len(racks)].",
        default=("rack-a", "rack-b", "rack-c"), nonempty=True, distinct=True, each=Bounds(nonempty=True),
    )
    # 0 never reaches the check: the pod's ordinal fills it in first (identity.py).
    machine_id: int = setting(
        "This process's machine id, unique in the cluster (`trenchcoat up` sets 1 + i). 0: "
        "the ordinal of the StatefulSet pod this runs in, plus 1 (host name `store-3`: 4).",
        default=1, ge=1, le=0xFFFFFFFF,
    )
    rack: str = setting(
        "This process's rack (`trenchcoat up` sets it from racks; in Kubernetes, the node's "
        "name or zone). Empty: racks[ordinal % len(racks)] by the StatefulSet pod's ordinal.",
        default="rack-a", nonempty=True,
    )
    rack_label: str = setting(
        "The label of the node this store runs on that names its rack (in Kubernetes: "
        "topology.kubernetes.io/zone, so a zone is a rack), read at start from the API server "
        "with the pod's service account. Empty: store.rack.",
        default="", free="any label name; the API server says whether the node carries it",
    )
    node: str = setting("The Kubernetes node this store runs on (the downward API's spec.nodeName), whose "
                        "rack_label is its rack.", default="",
                        free="any node name; required with rack_label (validate)")
    advertise: str = setting(
        "host:port the Directory gives out for this store. Empty: cluster.host and port.",
        default="", free="not checked (yet): handed out as it is",
    )
    http_advertise: str = setting(
        "host:port the Directory gives out for this store's HTTP needle reads. Empty: "
        "cluster.host and http_port.",
        default="", free="not checked (yet): handed out as it is",
    )
    volume_capacity_bytes: int = setting(
        "Largest volume file; a volume that cannot take the next needle turns read-only. "
        "At most 32 GiB (the index stores offsets in 8-byte units in 32 bits).",
        default=1024 * MiB, ge=4096, le=MAX_VOLUME_BYTES, why="32 GiB",
    )
    max_needle_bytes: int = setting(
        "Largest needle (photo or video chunk) a store accepts; larger writes get INVALID_ARGUMENT.",
        default=MAX_NEEDLE_BYTES, ge=1, le=MAX_NEEDLE_BYTES, why="gRPC messages carry at most 80 MiB",
    )
    checkpoint_interval_s: float = setting(
        "Seconds between index checkpoints of changed volumes (also written on clean "
        "shutdown); a restart scans only what was appended since.",
        default=30.0, gt=0,
    )
    io_threads: int = setting("Threads doing disk reads, writes and fdatasyncs.", default=16, ge=1, le=256)
    audit_bytes_per_s: int = setting(
        "Most bytes a second the background audit reads (every live needle of every volume: "
        "header, index agreement, CRC), in a thread of its own so reads never wait behind it.",
        default=16 * MiB, ge=4096,
    )
    audit_interval_s: float = setting(
        "Seconds from the start of one full audit pass to the next: every needle is verified "
        "at least this often (a week by default; seconds in tests). A pass that cannot finish "
        "in time at audit_bytes_per_s is logged and alerted on.",
        default=7 * 24 * 3600.0, gt=0,
    )
    peer_timeout_s: float = setting(
        "Deadline of a call to another store, and of each chunk of a repair's export stream "
        "from it (the whole copy takes as long as the volume needs); past it the repair fails "
        "and the Directory retries it.",
        default=10.0, gt=0,
    )

    def validate(self, section: str) -> None:
        ServiceConfig.validate(self, section)
        require(self.max_needle_bytes < self.volume_capacity_bytes, f"{section}.max_needle_bytes",
                f"must be smaller than volume_capacity_bytes ({self.volume_capacity_bytes}), "
                f"got {self.max_needle_bytes}")
        require(not self.rack_label or bool(self.node), f"{section}.node",
                "must name the node when rack_label is set (the downward API's spec.nodeName)")
