"""The panels an operator opens first, declared once: ``k8s/observability/dashboard.json``
(Grafana) is generated from them (``python -m trenchcoat.ops.dashboard > ...``; a test checks it
is current), and ``trenchcoat top`` shows the same queries live in a terminal.

Every expression reads the metrics the services export (and the recording rules of
``k8s/observability/rules.yml``); the launcher's test runs a real Prometheus against a
local cluster under a short load and checks that each one returns data.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

SERVER_ERRORS = "UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|UNIMPLEMENTED"
"""gRPC codes that say the service failed (the rest answer the request, NOT_FOUND included)."""


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    expr: str
    unit: str
    """Grafana's unit id: reqps, percentunit, s, bytes, short."""
    legend: str = ""
    """How a series is named (Grafana's legendFormat; ``top`` prints the same labels)."""


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Requests", (
        Panel("Uploads / s by outcome", 'sum by (outcome) (rate(trenchcoat_router_uploads_total[1m]))', "reqps",
              "{{outcome}}"),
        Panel("gRPC requests / s by service", "sum by (job) (rate(trenchcoat_grpc_requests_total[1m]))", "reqps",
              "{{job}}"),
        Panel("gRPC server errors (share of requests)",
              # Failures of the service, not answers about the request (NOT_FOUND, INVALID_ARGUMENT
              # are answers); a service with none has no such series: "or ... * 0" gives it a 0.
              f'(sum by (job) (rate(trenchcoat_grpc_requests_total{{code=~"{SERVER_ERRORS}"}}[1m]))'
              " or sum by (job) (rate(trenchcoat_grpc_requests_total[1m])) * 0)"
              " / clamp_min(sum by (job) (rate(trenchcoat_grpc_requests_total[1m])), 1e-9)", "percentunit",
              "{{job}}"),
        Panel("gRPC p99 latency by service",
              "histogram_quantile(0.99, sum by (job, le) (rate(trenchcoat_grpc_request_duration_seconds_bucket[1m])))",
              "s", "{{job}}"),
    )),
    ("Haystack", (
        Panel("Store volume fill (fullest volume)", "max by (instance) (trenchcoat_store_volume_fill_ratio)",
              "percentunit", "{{instance}}"),
        Panel("Needles by store", "sum by (instance) (trenchcoat_store_needles)", "short", "{{instance}}"),
        Panel("Writable volumes (the leader's view)",
              "max(trenchcoat_directory_writable_volumes and on (instance) trenchcoat_directory_is_leader == 1)",
              "short", "writable"),
        Panel("Repair bytes / s", "sum(rate(trenchcoat_directory_repaired_bytes_total[5m]))", "Bps", "repaired"),
    )),
    ("Healing", (
        Panel("Audit: bytes verified / s by store", "sum by (instance) (rate(trenchcoat_store_audited_bytes_total[5m]))",
              "Bps", "{{instance}}"),
        Panel("Audit: age of the last full pass",
              "time() - max by (instance) (trenchcoat_store_audit_last_pass_timestamp_seconds > 0)", "s",
              "{{instance}}"),
        Panel("Damaged needles: pending repair and unrecoverable",
              'label_replace(max(trenchcoat_directory_damaged_needles and on (instance)'
              ' trenchcoat_directory_is_leader == 1), "needles", "pending repair", "", "")'
              ' or label_replace(max(trenchcoat_directory_unrecoverable_needles and on (instance)'
              ' trenchcoat_directory_is_leader == 1), "needles", "unrecoverable", "", "")',
              "short", "{{needles}}"),
        Panel("Needle repairs: bytes rewritten / s", "sum(rate(trenchcoat_store_needle_repair_bytes_total[5m]))",
              "Bps", "rewritten"),
        Panel("Under-replicated volumes and re-replicating",
              'label_replace(max(trenchcoat_directory_under_replicated_volumes and on (instance)'
              ' trenchcoat_directory_is_leader == 1), "volumes", "under-replicated", "", "")'
              ' or label_replace(max(trenchcoat_directory_rereplicating_volumes and on (instance)'
              ' trenchcoat_directory_is_leader == 1), "volumes", "re-replicating", "", "")',
              "short", "{{volumes}}"),
        Panel("Re-replication bytes / s", "sum(rate(trenchcoat_directory_rereplicated_bytes_total[5m]))", "Bps",
              "copied"),
    )),
    ("Caches and CDN", (
        Panel("Cache hit ratio", "trenchcoat:cache_hit_ratio:rate5m", "percentunit", "hit ratio"),
        Panel("Cache lease grants and waits / s",
              'label_replace(sum(rate(trenchcoat_cache_lease_grants_total[1m])), "kind", "grants", "", "")'
              ' or label_replace(sum(rate(trenchcoat_cache_lease_waits_total[1m])), "kind", "waits", "", "")',
              "reqps", "{{kind}}"),
        Panel("CDN hit ratio", "trenchcoat:cdn_hit_ratio:rate5m", "percentunit", "hit ratio"),
        Panel("CDN requests / s by cache status",
              'sum by (cache_status) (rate(trenchcoat_cdn_requests_total{cache_status!="none"}[1m]))', "reqps",
              "{{cache_status}}"),
    )),
    ("Feed", (
        Panel("Fan-out lag p99", "trenchcoat:feed_fanout_lag_seconds:p99_5m", "s", "p99"),
        Panel("Fan-out queue and dead letters",
              'label_replace(max(trenchcoat_feed_fanout_queue_depth), "queue", "queued", "", "")'
              ' or label_replace(max(trenchcoat_feed_fanout_dead_letters), "queue", "dead", "", "")',
              "short", "{{queue}}"),
    )),
    ("Transformer", (
        Panel("Rendition queue and dead letters",
              'label_replace(max(trenchcoat_transformer_queue_depth), "queue", "queued", "", "")'
              ' or label_replace(max(trenchcoat_transformer_dead_letters), "queue", "dead", "", "")',
              "short", "{{queue}}"),
        Panel("Rendition jobs running", "sum(trenchcoat_transformer_jobs_in_flight)", "short", "running"),
    )),
    ("f4 warm tier", (
        Panel("f4 blocks by health", "sum by (health) (trenchcoat_f4_blocks)", "short", "{{health}}"),
        Panel("Online reconstructions: bytes read / s", "sum(rate(trenchcoat_f4_reconstruct_bytes_read_total[5m]))",
              "Bps", "read to rebuild"),
        Panel("Whole-block rebuilds: bytes / s and under way",
              'label_replace(sum(rate(trenchcoat_f4_rebuild_bytes_total[5m])), "what", "rebuilt/s", "", "")'
              ' or label_replace(sum(trenchcoat_f4_rebuild_in_progress_bytes), "what", "in progress", "", "")',
              "Bps", "{{what}}"),
    )),
)

PANELS: tuple[Panel, ...] = tuple(p for _, panels in ROWS for p in panels)


def grafana() -> dict[str, object]:
    """The Grafana dashboard (schema 39), one row of panels per ``ROWS`` entry."""
    panels: list[dict[str, object]] = []
    y = 0
    next_id = 1
    for row, members in ROWS:
        panels.append({"type": "row", "title": row, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        next_id += 1
        y += 1
        width = 24 // len(members)
        for i, panel in enumerate(members):
            panels.append({
                "type": "timeseries", "title": panel.title, "id": next_id,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": width, "x": i * width, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": panel.expr, "legendFormat": panel.legend,
                             "datasource": {"type": "prometheus", "uid": "${datasource}"}}],
            })
            next_id += 1
        y += 8
    return {
        "title": "trenchcoat", "uid": "trenchcoat", "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["trenchcoat"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(grafana(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
