"""Prometheus metrics of a store machine (besides the chassis's per-RPC ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

OPERATIONS = Counter(
    "trenchcoat_store_operations_total",
    "Needle operations by kind (read, write, delete) and outcome (ok or the status code).",
    ["op", "outcome"],
)
_operation_children: dict[tuple[str, str], Counter] = {}


def count_operation(op: str, outcome: str) -> None:
    """Counts one needle operation (the labelled child is looked up once)."""
    child = _operation_children.get((op, outcome))
    if child is None:
        child = _operation_children[op, outcome] = OPERATIONS.labels(op, outcome)
    child.inc()


CRC_FAILURES = Counter(
    "trenchcoat_store_checksum_failures_total",
    "Needles that failed verification on read or scrub (answered DATA_LOSS).",
)
FSYNC_BATCH = Histogram(
    "trenchcoat_store_fsync_batch_size",
    "Writes and deletes made durable by one fdatasync (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class VolumeCollector(Collector):
    """Per-volume gauges, read from the volumes at scrape time."""

    def __init__(self, volumes: Callable[[], Iterable[object]]) -> None:
        self._volumes = volumes

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        needles = GaugeMetricFamily("trenchcoat_store_needles", "Live needles.", labels=["volume"])
        deleted = GaugeMetricFamily("trenchcoat_store_deleted_needles", "Deleted needles not yet compacted.", labels=["volume"])
        live = GaugeMetricFamily("trenchcoat_store_live_bytes", "Bytes of live needles.", labels=["volume"])
        dead = GaugeMetricFamily("trenchcoat_store_dead_bytes", "Bytes compaction would reclaim.", labels=["volume"])
        fill = GaugeMetricFamily("trenchcoat_store_volume_fill_ratio", "Volume file size over capacity.", labels=["volume"])
        read_only = GaugeMetricFamily("trenchcoat_store_volume_read_only", "1 when the volume refuses writes.", labels=["volume"])
        preads = CounterMetricFamily("trenchcoat_store_preads", "Preads of needle bytes (one per needle read).", labels=["volume"])
        nowait = CounterMetricFamily(
            "trenchcoat_store_nowait_misses",
            "Reads the page cache could not answer without waiting; read in a reader thread instead.",
            labels=["volume"],
        )
        for v in self._volumes():
            label = [str(v.volume_id)]  # type: ignore[attr-defined]
            needles.add_metric(label, v.stats.needles)  # type: ignore[attr-defined]
            deleted.add_metric(label, v.stats.deleted)  # type: ignore[attr-defined]
            live.add_metric(label, v.stats.live_bytes)  # type: ignore[attr-defined]
            dead.add_metric(label, v.dead_bytes)  # type: ignore[attr-defined]
            fill.add_metric(label, v.file_bytes / v.limits.capacity_bytes)  # type: ignore[attr-defined]
            read_only.add_metric(label, 1 if v.read_only else 0)  # type: ignore[attr-defined]
            preads.add_metric(label, v.io.preads)  # type: ignore[attr-defined]
            nowait.add_metric(label, v.io.nowait_misses)  # type: ignore[attr-defined]
        yield from (needles, deleted, live, dead, fill, read_only, preads, nowait)


def register(volumes: Callable[[], Iterable[object]]) -> None:
    REGISTRY.register(VolumeCollector(volumes))


AUDITED_NEEDLES = Counter("trenchcoat_store_audited_needles_total", "Needles the background audit read and verified.")
AUDITED_BYTES = Counter("trenchcoat_store_audited_bytes_total", "Bytes the background audit read.")
AUDIT_FINDINGS = Counter(
    "trenchcoat_store_audit_findings_total",
    "Needles found wrong, by kind (damaged: CRC; unreadable; index: the index names other bytes) "
    "and by whom (audit or read), each reported to the Directory for repair.",
    ["kind", "found_by"],
)
AUDIT_LAST_PASS = Gauge(
    "trenchcoat_store_audit_last_pass_timestamp_seconds",
    "When the audit last finished a full pass over every volume of this store (Unix time; 0: none yet).",
)
AUDIT_INTERVAL = Gauge("trenchcoat_store_audit_interval_seconds",
                       "store.audit_interval_s: a full audit pass is due this often (the overdue alert compares).")
AUDIT_PASS_SECONDS = Gauge("trenchcoat_store_audit_pass_seconds", "How long the last full audit pass took.")
NEEDLE_REPAIRS = Counter(
    "trenchcoat_store_needle_repairs_total",
    "Needles of this store rewritten in place from a healthy replica, by outcome.",
    ["outcome"],
)
NEEDLE_REPAIR_BYTES = Counter("trenchcoat_store_needle_repair_bytes_total",
                              "Bytes written in place by needle repairs.")
CATCHUP_NEEDLES = Counter("trenchcoat_store_catchup_needles_total",
                          "Needles this store appended from another replica by catching up (only what differed).")
CATCHUP_BYTES = Counter("trenchcoat_store_catchup_received_bytes_total",
                        "Bytes this store received catching up (listings and needles).")
RESTORED_BYTES = Counter("trenchcoat_store_restored_bytes_total",
                         "Bytes this store received copying whole volumes from another replica (repairs of a copy "
                         "holding nothing, re-replication).")
