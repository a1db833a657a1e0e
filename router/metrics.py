"""The router's Prometheus metrics (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter("trenchcoat_router_uploads_total", "Uploads by outcome.", ["outcome"])
UPLOAD_BYTES = Counter("trenchcoat_router_upload_bytes_total", "Bytes of successful uploads.")
REPLICA_FAILURES = Counter("trenchcoat_router_replica_write_failures_total",
                           "Replica writes that failed, turning their volume read-only.")
UPLOAD_SECONDS = Histogram("trenchcoat_router_upload_seconds", "Upload latency, first byte held to answer.",
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DELETES = Counter("trenchcoat_router_deletes_total",
                  "Deletes by outcome: ok (carried out everywhere at once), journalled (some replica or cache "
                  "left to the delete journal's retries), already (deleted before).", ["outcome"])
BATCH_STAT_IDS = Counter("trenchcoat_router_batch_stat_ids_total",
                         "Media ids asked for by BatchStat (feed hydration's backend calls).")


ENQUEUED = Counter("trenchcoat_router_rendition_jobs_enqueued_total",
                   "Rendition jobs the router enqueued, by cause (upload, sweep) and outcome (new, known, failed).",
                   ["cause", "outcome"])


STORED = Counter("trenchcoat_router_renditions_stored_total",
                 "Renditions stored, by outcome (new; kept: one was recorded before; gone: the media was deleted).",
                 ["outcome"])


DELETE_ATTEMPTS = Counter("trenchcoat_router_delete_attempts_total",
                          "Attempts to carry out a journalled delete, by outcome (done, retry).", ["outcome"])


DELETES_PENDING = Gauge("trenchcoat_router_deletes_pending",
                        "Journalled deletes not yet carried out on every replica and cache (as of the last pass).")
