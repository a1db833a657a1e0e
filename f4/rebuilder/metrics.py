"""The Prometheus metrics of f4's rebuilder (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BLOCKS = Gauge("trenchcoat_f4_blocks", "Blocks of the cell's stripes by health at the last scan.", ["health"])


ORPHANS_DELETED = Counter("trenchcoat_f4_orphan_blocks_deleted_total",
                          "Copies of blocks left behind by moves (their node was away), deleted once seen.")


UNHEALTHY_SINCE = Gauge("trenchcoat_f4_oldest_unhealthy_block_age_seconds",
                        "Seconds the longest-unhealthy block has been so (0: every block is healthy).")
