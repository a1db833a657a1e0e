"""The Prometheus metrics of the cache (beside the chassis's per-RPC ones): hits, leases, admission, failovers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TRANSFORMS = Counter("trenchcoat_cache_transforms_total",
                     "Resizes on read, by outcome (ok, shared: answered by one under way, failed).", ["outcome"])


HITS = Counter("trenchcoat_cache_hits_total", "Reads served from memory.")


MISSES = Counter("trenchcoat_cache_misses_total", "Reads not in memory.")


LEASE_GRANTS = Counter("trenchcoat_cache_lease_grants_total", "Leases granted (Store reads on a miss).")


LEASE_WAITS = Counter("trenchcoat_cache_lease_waits_total", "Misses that waited for another reader's lease.")


ADMITTED = Counter("trenchcoat_cache_admissions_total", "Photos admitted into memory.")


NOT_ADMITTED = Counter("trenchcoat_cache_not_admitted_total", "Misses not admitted, by reason.", ["reason"])


FAILOVERS = Counter("trenchcoat_cache_replica_failovers_total", "Store reads moved to another replica.")


WARM_READS = Counter("trenchcoat_cache_warm_reads_total", "Misses of warm volumes read from f4 (never admitted).")


BYTES = Gauge("trenchcoat_cache_bytes", "Photo bytes held.")


ENTRIES = Gauge("trenchcoat_cache_entries", "Photos held.")


RESPONSES = Counter("trenchcoat_cache_http_responses_total",
                    "Photo HTTP responses, by status and what the cache did (hit, admitted, miss, -).",
                    ["status", "cache"])
