"""The Prometheus metrics of an f4 storage node (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CHECKSUM_FAILURES = Counter("trenchcoat_f4_storage_checksum_failures_total",
                            "Range reads whose block chunks failed their CRC32C (answered DATA_LOSS).")


BYTES_READ = Counter("trenchcoat_f4_storage_bytes_read_total", "Block bytes read from disk, by reason.", ["reason"])


DAMAGED = Gauge("trenchcoat_f4_storage_damaged_blocks", "Blocks held that failed a checksum (reads or scrub).")
