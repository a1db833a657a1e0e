"""The Prometheus metrics of the f4 cell's shared work (beside the chassis's per-RPC ones):
degraded reads, online reconstructions, rebuilds, encodes, XOR pairing. Each f4 process
package keeps its own besides (storage, keystore, rebuilder)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONSTRUCTIONS = Counter("trenchcoat_f4_reconstructions_total",
                          "Byte ranges of lost blocks rebuilt from 10 other blocks, by outcome.", ["outcome"])


RECONSTRUCT_BYTES = Counter("trenchcoat_f4_reconstruct_bytes_read_total",
                            "Bytes read from surviving blocks to rebuild ranges of lost blocks.")


RECONSTRUCTED_BYTES = Counter("trenchcoat_f4_reconstructed_bytes_total", "Bytes of lost blocks rebuilt by range.")


READ_PER_RECONSTRUCTION = Histogram(
    "trenchcoat_f4_reconstruct_read_bytes", "Bytes read from surviving blocks by one reconstruction.",
    buckets=(16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6, 256e6))


REBUILD_BYTES = Counter("trenchcoat_f4_rebuild_bytes_total", "Bytes of blocks rebuilt whole.")


REBUILDS = Counter("trenchcoat_f4_rebuilds_total", "Whole-block rebuilds, by outcome.", ["outcome"])


THROTTLE = Gauge("trenchcoat_f4_rebuild_throttle_bytes_per_s", "Bytes a second whole-block rebuilds may read.")


IN_PROGRESS = Gauge("trenchcoat_f4_rebuild_in_progress_bytes", "Bytes of the block being rebuilt now, done and all.",
                    ["part"])


XOR_READS = Counter("trenchcoat_f4_xor_reads_total",
                    "Extents of warm reads served from the buddy volume and the XOR (their own cell could not).")


PAIRS = Counter("trenchcoat_f4_xor_pairs_total", "Volume pairs whose XOR was written to the XOR cell, by outcome.",
                ["outcome"])


ENCODING = Gauge("trenchcoat_f4_encode_in_progress", "Volume encodes under way, and their progress.", ["part"])


DEGRADED_READS = Counter("trenchcoat_f4_degraded_reads_total",
                         "Extents of warm reads whose data block failed or was slow, rebuilt from 10 others.")
