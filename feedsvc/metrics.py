"""The feed's Prometheus metrics (beside the chassis's per-RPC ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FANOUT_LAG = Histogram(
    "trenchcoat_feed_fanout_lag_seconds", "From a post's commit to its last timeline written.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
FANOUT_JOBS = Counter("trenchcoat_feed_fanout_jobs_total", "Fan-out jobs handled, by kind and outcome.",
                      ["kind", "outcome"])
TIMELINE_WRITES = Counter("trenchcoat_feed_timeline_writes_total", "Timeline entries written or removed by fan-out.")
QUEUE_DEPTH = Gauge("trenchcoat_feed_fanout_queue_depth", "Fan-out jobs waiting or running (stream length).")
DEAD_DEPTH = Gauge("trenchcoat_feed_fanout_dead_letters", "Fan-out jobs in the dead-letter stream.")
DEAD_LETTERS = Counter("trenchcoat_feed_fanout_dead_lettered_total", "Fan-out jobs sent to the dead-letter stream.")
SWEPT = Counter("trenchcoat_feed_fanout_swept_total", "Posts whose unfinished fan-out the sweeper enqueued again.")
READ_SECONDS = Histogram("trenchcoat_feed_read_seconds", "Feed page reads, by feed.", ["feed"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SPLICES = Counter("trenchcoat_feed_celebrity_splices_total", "Celebrity lists merged into home feed pages.")
FROM_POSTGRES = Counter("trenchcoat_feed_pages_from_postgres_total",
                        "Home feed pages continued from PostgreSQL (below what Redis holds).")
REBUILDS = Counter("trenchcoat_feed_rebuilds_total", "Redis keys rebuilt from PostgreSQL on read, by kind.", ["kind"])
HYDRATION = Counter("trenchcoat_feed_hydration_total",
                    "Hydrated entries: hit (in the metadata cache), miss, lease_grant, lease_wait, unhydrated (facts "
                    "not to be had now), changed (facts dropped while fetched: shown, not cached).", ["outcome"])


INTENTS_FINISHED = Counter("trenchcoat_feed_intents_total",
                   "Follow-ups finished by the sweeper (follow: an edge changed; delete: a post deleted), by "
                   "outcome (done, retry).", ["kind", "outcome"])


INTENTS_PENDING = Gauge("trenchcoat_feed_intents_pending",
                "Follow-ups of committed changes not known to be done (as of the last sweep).")
