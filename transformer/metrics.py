"""The transformer's Prometheus metrics (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("trenchcoat_transformer_jobs_total",
               "Rendition jobs handled, by kind and outcome (ok; retried, after a failure of either kind "
               "trenchcoat_transformer_failures_total counts; dead).", ["kind", "outcome"])
FAILURES = Counter("trenchcoat_transformer_failures_total",
                   "Failed rendition job attempts, by kind and reason (permanent: the source can never render, "
                   "dead-lettered at once; transient: a dependency away or overloaded, retried within "
                   "retry_budget_s; counted: any other, retried up to max_attempts).", ["kind", "reason"])
RENDITIONS = Counter("trenchcoat_transformer_renditions_total",
                     "Renditions stored, by kind and outcome (new; kept: one was stored before).", ["kind", "outcome"])
LAG = Histogram("trenchcoat_transformer_rendition_lag_seconds",
                "From the upload (its media_id's time) to its job's last rendition durable, by kind.", ["kind"],
                buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
RENDER_SECONDS = Histogram("trenchcoat_transformer_render_seconds",
                           "CPU work of one job (decode, resize, encode), by kind.", ["kind"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
IN_FLIGHT = Gauge("trenchcoat_transformer_jobs_in_flight", "Jobs running in this worker now.")
QUEUE_DEPTH = Gauge("trenchcoat_transformer_queue_depth", "Rendition jobs waiting or running (stream length).")
DEAD_DEPTH = Gauge("trenchcoat_transformer_dead_letters", "Rendition jobs in the dead-letter stream.")
REALTIME = Histogram("trenchcoat_transformer_video_realtime_factor",
                     "Seconds of video transcoded per second of wall time, by rung height.", ["height"],
                     buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
