"""The Kubernetes workloads of ``k8s/base``, declared once: ``k8s/base/workloads.yaml`` is
generated from them (``python -m trenchcoat.ops.k8s``, which also writes the Prometheus
Operator's copy of the rules; a test checks both are current), so every port, probe and
identity comes from the same config sections the processes read.

Every service is its own workload running ``python -m <module>`` from the one image with the
cluster config (the ConfigMap ``trenchcoat-config``, the same TOML ``trenchcoat up`` uses)
and its identity through ``TRENCHCOAT_<SECTION>__<KEY>`` variables: a store's machine id
and an f4 storage node's id from the StatefulSet ordinal (``machine_id = 0``), a store's
rack the zone of the node it runs on (read with its ServiceAccount, the only pods with a
token), the addresses they advertise from the pod's own DNS name.

Each pod presents its role's identity (the Secret ``trenchcoat-tls-<role>``, mounted at
cluster.tls_dir): every gRPC hop is mutual TLS, checked against the permission table.
Readiness, liveness and startup probes are HTTP on each process's metrics port
(``/readyz``: its ``grpc.health.v1`` status; ``/livez``: no worker failed), as the gRPC
port answers only callers with a cluster certificate; termination grace covers the drain notice and grace period;
pods carry ``prometheus.io/*`` annotations for a plain Prometheus (the Prometheus Operator's
PodMonitor is in ``k8s/observability/operator``).

Beside them, the Job ``shards-init`` stores the shard map (``trenchcoat shards init``) over
the PostgreSQL instances the Secret ``trenchcoat-postgres`` names (``dsn`` and
``shard_dsns``): the services holding rows wait for it at start; and the Job
``redis-cluster-init`` forms the Redis Cluster of dependencies.yaml's StatefulSet ``redis``
(``redis-cli --cluster create``, once: it leaves a formed cluster as it is).
"""

from __future__ import annotations

import base64
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trenchcoat import tls, tokens
from trenchcoat.config import Config, ServiceConfig, env_key, load
from trenchcoat.f4_types import PARITY_BLOCKS as F4_PARITY

IMAGE = "trenchcoat"
"""The image's name in the manifests; overlays pin its tag with kustomize ``images:``."""
CONFIG_DIR = "/etc/trenchcoat"
CONFIG_FILE = f"{CONFIG_DIR}/trenchcoat.toml"
DATA_DIR = "/data"
"""cluster.data_dir in the pods: a PersistentVolume for stateful workloads, an emptyDir else."""
TLS_DIR = "/etc/trenchcoat-tls"
"""cluster.tls_dir in the pods: the workload's identity (``tls_volume``)."""
SITE_CONFIG = "trenchcoat-site"
"""The ConfigMap each overlay generates with what differs per site (``cdn_base_url``)."""
UID = 10001
"""The image's non-root user."""
POSTGRES_SECRET = "trenchcoat-postgres"
REDIS_SECRET = "trenchcoat-redis"
POSTGRES_INSTANCES = 2
"""The PostgreSQL StatefulSet's replicas in k8s/base/dependencies.yaml, each an instance of
its own (``postgres-<i>.postgres``): ``dsn`` names the first, ``shard_dsns`` the others
(``secrets``; a test checks they agree)."""
REDIS_NODES = 6
"""The Redis StatefulSet's replicas in k8s/base/dependencies.yaml (``redis-<i>.redis``), the
nodes of one Redis Cluster: REDIS_NODES / (1 + REDIS_REPLICAS_PER_PRIMARY) primaries, each
with its replicas (a test checks they agree)."""
REDIS_REPLICAS_PER_PRIMARY = 1
REDIS_PORT = 6379
"""Each Redis node's client port (TLS only); its cluster bus is REDIS_BUS_PORT (TLS too)."""
REDIS_BUS_PORT = 16379
REDIS_IMAGE = "redis:7.4.1-bookworm"
"""The image of dependencies.yaml's Redis, which the Job redis-cluster-init runs as well (its
redis-cli); a test checks they agree."""
REDIS_UID = 999
"""The redis image's user (``redis``), which its pods run as."""
ZONE = "topology.kubernetes.io/zone"
PART_OF = "trenchcoat"
NAMESPACE = "trenchcoat"


@dataclass(frozen=True)
class Workload:
    """One service as a Kubernetes workload."""

    name: str
    """The workload's (and its Service's) name; DNS-1035."""
    section: str
    """Its config section."""
    module: str
    """What ``python -m`` runs."""
    replicas: int
    stateful: bool = False
    """A StatefulSet (stable names and ordinals) rather than a Deployment."""
    storage: str = ""
    """A PersistentVolumeClaim of this size per pod at DATA_DIR (stateful only)."""
    cpu: str = "50m"
    memory: str = "96Mi"
    memory_limit: str = "512Mi"
    env: tuple[dict[str, Any], ...] = ()
    spread: bool = False
    """Spread over zones (a zone is a rack), at most one pod more in any zone: a rule, so
    a volume's replicas (on distinct racks) are on distinct zones; over nodes, a preference."""
    spread_nodes: bool = False
    """Spread over nodes as a rule (at most one pod more on any node), over zones as a
    preference: an f4 stripe's 14 blocks are on 14 pods, and no node may hold more of
    them than the parity (4) survives losing, so the cluster needs ceil(14 / 4) = 4 nodes."""
    max_unavailable: int = 1
    """Pods a voluntary disruption may take at once (a PodDisruptionBudget when replicas > 1)."""
    postgres: bool = False
    """Its processes use PostgreSQL: the pod gets the DSNs from the Secret (no other does)."""
    redis: bool = False
    """Its processes use Redis: the pod gets the URL (with the password) and whether it names
    a Redis Cluster from the Secret."""
    startup_s: int = 120
    """How long the process may take to serve (a store loading its index takes longest)."""
    per_pod_services: bool = False
    """One ClusterIP Service per pod (``<name>-<ordinal>``): a stable address for each
    cache id, which the CDN's nginx resolves once."""
    extra_ports: tuple[str, ...] = field(default=())
    """Other port keys of the section the process serves (named after the key)."""
    service_account: str = ""
    """The ServiceAccount its pods run as, with its token mounted (stores: to read their
    node's zone). Empty: none mounted; trenchcoat pods need no API access otherwise."""


def field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


WORKLOADS: tuple[Workload, ...] = (
    Workload("directory", "directory", "directory", 2),
    Workload(
        "store", "store", "store", 6, stateful=True, storage="10Gi", cpu="100m", memory="256Mi",
        memory_limit="2Gi", spread=True, startup_s=1200, extra_ports=("http_port",),
        service_account="trenchcoat-store",
        env=(
            {"name": env_key("store", "machine_id"), "value": "0"},  # from the ordinal: store-3 is machine 4
            # The rack is the zone of the node the pod runs on (read from the API server at start).
            field_env(env_key("store", "node"), "spec.nodeName"),
            {"name": env_key("store", "rack_label"), "value": ZONE},
            {"name": env_key("store", "advertise"), "value": "$(POD_NAME).store:{port}"},
            {"name": env_key("store", "http_advertise"), "value": "$(POD_NAME).store:{http_port}"},
        ),
    ),
    Workload("cache", "cache", "cache", 2, stateful=True, cpu="100m", memory="384Mi", memory_limit="1Gi",
             per_pod_services=True, extra_ports=("http_port",)),
    Workload("transformer", "transformer", "transformer", 2, cpu="250m", memory="512Mi", memory_limit="2Gi", redis=True),
    Workload(
        "f4-storage", "f4_storage", "f4.storage", 14, stateful=True, storage="10Gi", spread_nodes=True,
        max_unavailable=F4_PARITY, startup_s=600,
        env=(
            {"name": env_key("f4_storage", "node_id"), "value": "0"},
            {"name": env_key("f4_storage", "advertise"), "value": "$(POD_NAME).f4-storage:{port}"},
        ),
    ),
    Workload("f4-keystore", "f4_keystore", "f4.keystore", 1, postgres=True),
    Workload("f4-backoff", "f4_backoff", "f4.backoff", 1, cpu="100m"),
    Workload("f4", "f4", "f4", 1, cpu="100m", memory="256Mi", memory_limit="1Gi"),
    Workload("f4-rebuilder", "f4_rebuilder", "f4.rebuilder", 1, stateful=True, storage="1Gi"),
    Workload("feed", "feed", "feedsvc", 2, postgres=True, redis=True),
    Workload("fanout", "fanout", "feedsvc.worker", 2, postgres=True, redis=True),
    Workload("router", "router", "router", 2, cpu="100m", memory="256Mi", memory_limit="1Gi", postgres=True,
             redis=True,
             # Where photo URLs point is the site's, not the base's: each overlay's ConfigMap says.
             env=({"name": env_key("router", "cdn_base_url"),
                   "valueFrom": {"configMapKeyRef": {"name": SITE_CONFIG, "key": "cdn_base_url"}}},)),
)

CDN = Workload("cdn", "cdn", "trenchcoat.ops.cdn", 1, memory="96Mi", memory_limit="384Mi")
"""nginx (in the image) in front of the caches: ``python -m trenchcoat.ops.cdn`` writes its
config from the cluster config, runs nginx and counts its access log for /metrics."""


def labels(name: str, section: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": section,
            "app.kubernetes.io/part-of": PART_OF}


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def _probe(kind: str, port: int, *, period: int, failures: int, live: bool = False) -> dict[str, Any]:
    """An HTTP probe: the CDN's /cdn-health, or a service's /readyz or /livez on its metrics
    port (its gRPC port speaks mutual TLS only, and the kubelet's gRPC probes present no
    certificate)."""
    if kind == "http":
        get: dict[str, Any] = {"path": "/cdn-health", "port": port}
    else:  # HTTPS: the kubelet checks no certificate and presents none; the probe paths answer anyone
        get = {"path": "/livez" if live else "/readyz", "port": port, "scheme": "HTTPS"}
    return {"httpGet": get, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


def tls_volume(role: str) -> dict[str, Any]:
    """A role's identity as a volume: the Secret ``trenchcoat-tls-<role>`` (what cert-manager's
    Certificate, or ``trenchcoat certs --k8s``, writes: ca.crt, tls.crt, tls.key) laid out as
    cluster.tls_dir wants it, and for the roles that check user tokens the public key of
    Secret ``trenchcoat-user-tokens``. Mounted whole (no subPath), so a renewed certificate
    reaches the running process, which takes it up without a restart."""
    sources: list[dict[str, Any]] = [
        {"secret": {"name": f"trenchcoat-tls-{role}",
                    "items": [{"key": "ca.crt", "path": tls.CA_FILE}, {"key": "tls.crt", "path": f"{role}.crt"},
                              {"key": "tls.key", "path": f"{role}.key"}]}}]
    if role in CHECKS_USER_TOKENS:
        sources.append({"secret": {"name": USER_TOKENS_SECRET,
                                   "items": [{"key": tokens.PUBLIC_FILE, "path": tokens.PUBLIC_FILE}]}})
    return {"name": "tls", "projected": {"defaultMode": 0o440, "sources": sources}}


CHECKS_USER_TOKENS = frozenset({"router", "feed"})
"""Roles serving methods that act for a user (MediaService, FeedService): they verify tokens."""
USER_TOKENS_SECRET = "trenchcoat-user-tokens"


def secret_env(name: str, secret: str, key: str, **extra: Any) -> dict[str, Any]:
    """The variable ``name`` from key ``key`` of Secret ``secret``."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **extra}}}


def credentials_env(*, postgres: bool, redis: bool) -> list[dict[str, Any]]:
    """The dependencies' addresses with their credentials, from their Secrets: PostgreSQL's
    ``dsn`` and ``shard_dsns`` (the further instances holding shards, comma-separated;
    optional, so a Secret made for one instance, without the key, still serves), Redis's
    ``url`` and ``cluster`` ("true": the url names a node of a Redis Cluster; optional, so a
    Secret naming a single Redis omits it or says "false")."""
    env = [secret_env(env_key("postgres", "dsn"), POSTGRES_SECRET, "dsn"),
           secret_env(env_key("postgres", "shard_dsns"), POSTGRES_SECRET, "shard_dsns", optional=True)
           ] if postgres else []
    return env + ([secret_env(env_key("redis", "url"), REDIS_SECRET, "url"),
                   secret_env(env_key("redis", "cluster"), REDIS_SECRET, "cluster", optional=True)] if redis else [])


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod(w: Workload, ports: list[dict[str, Any]], probe: tuple[str, int], metrics_port: int | None,
         grace_s: int) -> dict[str, Any]:
    kind, probe_port = probe
    by_key = {("port" if p["name"] == "grpc" else f"{p['name']}_port"): p["containerPort"] for p in ports}
    env = [field_env("POD_NAME", "metadata.name"),
           {"name": "TRENCHCOAT_CONFIG", "value": CONFIG_FILE},
           *credentials_env(postgres=w.postgres, redis=w.redis),
           *({**e, "value": e["value"].format(**by_key)} if "value" in e else e for e in w.env)]
    role = tls.ROLE_OF_MODULE.get(w.module)
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                    {"name": "data", "mountPath": DATA_DIR},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                    *([{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}] if role else [])]
    container = {
        "name": w.name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", w.module],
        "env": env,
        "ports": ports,
        "startupProbe": _probe(kind, probe_port, period=2, failures=math.ceil(w.startup_s / 2)),
        "readinessProbe": _probe(kind, probe_port, period=5, failures=2),
        "livenessProbe": _probe(kind, probe_port, period=10, failures=6, live=True),
        "resources": {"requests": {"cpu": w.cpu, "memory": w.memory}, "limits": {"memory": w.memory_limit}},
        "securityContext": _security(),
        "volumeMounts": mounts,
    }
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": "trenchcoat-config"}},
                                     {"name": "tmp", "emptyDir": {}}]
    if not w.storage:
        volumes.append({"name": "data", "emptyDir": {}})
    if role is not None:
        volumes.append(tls_volume(role))
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": _pod_security(),
        "enableServiceLinks": False,
        **({"serviceAccountName": w.service_account} if w.service_account else {}),
        "automountServiceAccountToken": bool(w.service_account),
        "containers": [container],
        "volumes": volumes,
    }
    if w.spread or w.spread_nodes:
        selector = {"matchLabels": {"app.kubernetes.io/name": w.name}}
        zones = {"maxSkew": 1, "topologyKey": ZONE, "labelSelector": selector}
        nodes = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "labelSelector": selector}
        # The rule first (overlays relax /topologySpreadConstraints/0 on a single node).
        spec["topologySpreadConstraints"] = (
            [{**nodes, "whenUnsatisfiable": "DoNotSchedule"}, {**zones, "whenUnsatisfiable": "ScheduleAnyway"}]
            if w.spread_nodes else
            [{**zones, "whenUnsatisfiable": "DoNotSchedule"}, {**nodes, "whenUnsatisfiable": "ScheduleAnyway"}])
    meta: dict[str, Any] = {"labels": labels(w.name, w.section)}
    if metrics_port is not None:
        meta["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port),
                               "prometheus.io/path": "/metrics", "prometheus.io/scheme": "https"}
    return {"metadata": meta, "spec": spec}


def rbac() -> list[dict[str, Any]]:
    """The stores' ServiceAccount, allowed to read nodes (a store's rack is its node's zone)."""
    meta = {"labels": {"app.kubernetes.io/part-of": PART_OF}}
    account = next(w.service_account for w in WORKLOADS if w.name == "store")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "trenchcoat-node-reader", **meta},
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "trenchcoat-store-node-reader", **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "trenchcoat-node-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "trenchcoat"}]},
    ]


def manifests(config: Config) -> list[dict[str, Any]]:
    """Every workload with its Services and PodDisruptionBudget, for ``config``'s ports, and
    the stores' access to their nodes."""
    docs: list[dict[str, Any]] = rbac()
    for w in (*WORKLOADS, CDN):
        if w is CDN:
            ports = [{"name": "http", "containerPort": config.cdn.port},
                     {"name": "metrics", "containerPort": config.cdn.metrics_port}]
            probe, metrics_port, grace = ("http", config.cdn.port), config.cdn.metrics_port, 15
        else:
            service: ServiceConfig = getattr(config, w.section)
            ports = [{"name": "grpc", "containerPort": service.port},
                     {"name": "metrics", "containerPort": service.metrics_port},
                     *({"name": key.removesuffix("_port"), "containerPort": getattr(service, key)}
                       for key in w.extra_ports)]
            probe, metrics_port = ("service", service.metrics_port), service.metrics_port
            grace = math.ceil(service.drain_notice_s + service.grace_period_s) + 5
        docs.extend(_workload(w, ports, probe, metrics_port, grace))
    docs.append(shards_init_job())
    docs.append(redis_cluster_init_job())
    return docs


def _workload(w: Workload, ports: list[dict[str, Any]], probe: tuple[str, int], metrics_port: int | None,
              grace_s: int) -> list[dict[str, Any]]:
    selector = {"app.kubernetes.io/name": w.name}
    spec: dict[str, Any] = {"replicas": w.replicas, "selector": {"matchLabels": selector},
                            "template": _pod(w, ports, probe, metrics_port, grace_s)}
    service_ports = [{"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]} for p in ports]
    docs: list[dict[str, Any]] = []
    if w.stateful:
        spec |= {"serviceName": w.name, "podManagementPolicy": "Parallel",
                 "updateStrategy": {"type": "RollingUpdate"}}
        if w.storage:
            spec["volumeClaimTemplates"] = [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": w.storage}}},
            }]
        # Headless: each pod's own name (store-3.store) resolves even before it is ready, which
        # is what the Directory and the peers use to reach it.
        docs.append(_service(w, {"clusterIP": "None", "publishNotReadyAddresses": True, "ports": service_ports,
                                 "selector": selector}))
        if w.per_pod_services:
            for i in range(w.replicas):
                docs.append(_service(w, {"ports": service_ports,
                                         "selector": {**selector,
                                                      "statefulset.kubernetes.io/pod-name": f"{w.name}-{i}"}},
                                     name=f"{w.name}-{i}"))
        kind = "StatefulSet"
    else:
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        if w.module != "feedsvc.worker":  # fan-out workers take jobs from Redis; nothing calls them
            docs.append(_service(w, {"ports": service_ports, "selector": selector}))
        kind = "Deployment"
    docs.insert(0, {"apiVersion": "apps/v1", "kind": kind,
                    "metadata": {"name": w.name, "labels": labels(w.name, w.section)}, "spec": spec})
    if w.replicas > 1:
        docs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": w.name, "labels": labels(w.name, w.section)},
                     "spec": {"maxUnavailable": w.max_unavailable, "selector": {"matchLabels": selector}}})
    return docs


def _service(w: Workload, spec: dict[str, Any], name: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name or w.name, "labels": labels(w.name, w.section)}, "spec": spec}


SHARDS_INIT = "shards-init"
SHARDS_INIT_RETRIES = 20
"""The Job's backoffLimit: the kubelet waits 10 s after the first failed run, doubling to 5
minutes, so it keeps trying for well over an hour while etcd and PostgreSQL come up."""


def shards_init_job() -> dict[str, Any]:
    """The Job making the shard map: ``trenchcoat shards init`` (the image's CLI) as the
    operator's ``admin`` identity, with the cluster config and the very DSNs the services
    holding rows get (the router's), so the shards are split over the instances they
    reach; until it has run they wait (cluster.start_wait_s, then a restart). It fails
    while etcd or an instance is down and is retried; it never replaces a stored map (rows
    live where it says), so a Job made again keeps it. Kept once it succeeds (no
    ttlSecondsAfterFinished): a finished Job is not run again by a later apply, and its pod
    template cannot change, so a new image means deleting the Job first."""
    container = {
        "name": SHARDS_INIT,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "trenchcoat", "shards", "init"],
        "env": [{"name": "TRENCHCOAT_CONFIG", "value": CONFIG_FILE}, *credentials_env(postgres=True, redis=False)],
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": _security(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}],
    }
    pod = {"restartPolicy": "OnFailure", "securityContext": _pod_security(), "enableServiceLinks": False,
           "automountServiceAccountToken": False, "containers": [container],
           "volumes": [{"name": "config", "configMap": {"name": "trenchcoat-config"}},
                       {"name": "tmp", "emptyDir": {}}, tls_volume("admin")]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": SHARDS_INIT, "labels": labels(SHARDS_INIT, "shards")},
            "spec": {"backoffLimit": SHARDS_INIT_RETRIES,
                     "template": {"metadata": {"labels": labels(SHARDS_INIT, "shards")}, "spec": pod}}}


REDIS_CLUSTER_INIT = "redis-cluster-init"
REDIS_CLUSTER_INIT_RETRIES = 20
"""The Job's backoffLimit: as shards-init's, well over an hour of retries while the Redis
pods come up."""
REDIS_TLS_DIR = "/etc/redis-tls"
"""Where Redis's pods (and the Job's) mount Secret trenchcoat-tls-redis."""
REDIS_USER = "trenchcoat"
"""The ACL user of dependencies.yaml's Redis (its default user is off)."""
REDIS_CLUSTER_INIT_SCRIPT = """\
set -u
# Secret trenchcoat-redis's key cluster says whether redis.url names a Redis Cluster.
if [ "${REDIS_CLUSTER:-false}" != true ]; then
  echo "Secret trenchcoat-redis names no Redis Cluster (its key cluster is not true): nothing to form"
  exit 0
fi
ask() {
  node=$1; shift
  redis-cli --tls --cacert @CA@ --user @USER@ -h "${node%:*}" -p "${node##*:}" "$@" 2>&1 | tr -d '\\r'
}
field() { ask "$1" cluster info | sed -n "s/^$2://p"; }
formed=""
for node in $REDIS_NODES; do
  reply=$(ask "$node" ping)
  if [ "$reply" != PONG ]; then
    echo "$node does not answer yet: $reply"
    exit 1
  fi
  if [ "$(field "$node" cluster_known_nodes)" != 1 ] || [ "$(field "$node" cluster_slots_assigned)" != 0 ]; then
    formed="$formed $node"
  fi
done
if [ -z "$formed" ]; then
  redis-cli --cluster create $REDIS_NODES --cluster-replicas @REPLICAS@ --cluster-yes \\
    --tls --cacert @CA@ --user @USER@ || exit 1
else
  echo "already met in a cluster:$formed; not created again"
fi
for node in $REDIS_NODES; do
  tries=0
  until [ "$(field "$node" cluster_state)" = ok ]; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "$node: cluster_state:$(field "$node" cluster_state) after 30 s"
      exit 1
    fi
    sleep 1
  done
done
echo "the Redis Cluster is formed: cluster_state:ok on $REDIS_NODES"
""".replace("@CA@", f"{REDIS_TLS_DIR}/ca.crt").replace("@USER@", REDIS_USER).replace(
    "@REPLICAS@", str(REDIS_REPLICAS_PER_PRIMARY))
"""What the Job runs (``sh -c``): once every node of ``$REDIS_NODES`` answers (else it fails,
and is retried), ``redis-cli --cluster create`` over them, unless any already knows another
node or serves slots (met in a cluster before: it is never formed twice); then it waits for
``cluster_state:ok`` on every node (a cluster whose forming was cut short does not get
there, and the Job fails until it is mended by hand: ``redis-cli --cluster fix``). The
password comes in REDISCLI_AUTH, never on a command line."""


def redis_nodes() -> list[str]:
    """Every node of the Redis Cluster, as its pod is dialled (``redis-<i>.redis:6379``)."""
    return [f"redis-{i}.redis:{REDIS_PORT}" for i in range(REDIS_NODES)]


def redis_pod_security() -> dict[str, Any]:
    """The pod securityContext of dependencies.yaml's Redis, the image's user (a test checks
    they agree)."""
    return {"runAsNonRoot": True, "runAsUser": REDIS_UID, "runAsGroup": REDIS_UID, "fsGroup": REDIS_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def redis_cluster_init_job() -> dict[str, Any]:
    """The Job forming the Redis Cluster of dependencies.yaml's StatefulSet ``redis``: the
    redis image's ``redis-cli`` (``REDIS_CLUSTER_INIT_SCRIPT``) as the ACL user trenchcoat,
    verifying the nodes with the CA of Secret trenchcoat-tls-redis. It fails while a node
    does not answer and is retried (backoffLimit); a cluster already formed is left as it
    is, so the Job made again (a deleted Job, a new namespace over old volumes) does no harm.
    Kept once it succeeds, like shards-init. With a Secret naming no cluster (key ``cluster``
    absent or not "true") it does nothing."""
    container = {
        "name": REDIS_CLUSTER_INIT,
        "image": REDIS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", REDIS_CLUSTER_INIT_SCRIPT],
        "env": [{"name": "REDIS_NODES", "value": " ".join(redis_nodes())},
                secret_env("REDISCLI_AUTH", REDIS_SECRET, "password"),
                secret_env("REDIS_CLUSTER", REDIS_SECRET, "cluster", optional=True)],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": _security(),
        "volumeMounts": [{"name": "tls", "mountPath": REDIS_TLS_DIR, "readOnly": True}],
    }
    pod = {"restartPolicy": "OnFailure", "securityContext": redis_pod_security(), "enableServiceLinks": False,
           "automountServiceAccountToken": False, "containers": [container],
           "volumes": [{"name": "tls", "secret": {"secretName": "trenchcoat-tls-redis", "defaultMode": 0o440,
                                                  "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": REDIS_CLUSTER_INIT, "labels": labels(REDIS_CLUSTER_INIT, "redis")},
            "spec": {"backoffLimit": REDIS_CLUSTER_INIT_RETRIES,
                     "template": {"metadata": {"labels": labels(REDIS_CLUSTER_INIT, "redis")}, "spec": pod}}}


HEADER = """\
# Generated by `python -m trenchcoat.ops.k8s` from trenchcoat/ops/k8s.py (a test checks it is
# current): every trenchcoat service as its own workload, with its Services and
# PodDisruptionBudget, the Job shards-init storing the shard map over the PostgreSQL
# instances of Secret trenchcoat-postgres, and the Job redis-cluster-init forming the Redis
# Cluster of dependencies.yaml. Change trenchcoat/ops/k8s.py, not this file; overlays patch it.
"""

RULE_HEADER = """\
# Generated by `python -m trenchcoat.ops.k8s` from k8s/observability/rules.yml (a test checks it
# is current): the same recording and alert rules, for the Prometheus Operator.
"""

OPERATOR_RELEASE = "kube-prometheus-stack"
"""The ``release`` label the operator component's PodMonitor and PrometheusRule carry:
kube-prometheus-stack selects them by its Helm release's name (its default name here)."""

ROOT = Path(__file__).resolve().parents[2]  # the repository (this is trenchcoat/ops/k8s.py)
WORKLOADS_FILE = ROOT / "k8s" / "base" / "workloads.yaml"
BASE_CONFIG_FILE = ROOT / "k8s" / "base" / "trenchcoat.toml"
RULES_FILE = ROOT / "k8s" / "observability" / "rules.yml"
OPERATOR_RULES_FILE = ROOT / "k8s" / "observability" / "operator" / "prometheusrule.yaml"
CERTIFICATES_FILE = ROOT / "k8s" / "tls" / "cert-manager" / "certificates.yaml"
POLICIES_FILE = ROOT / "k8s" / "base" / "network-policies.yaml"
POLICIES_HEADER = """\
# Generated by `python -m trenchcoat.ops.k8s` from trenchcoat/ops/k8s.py (network_policies()):
# edit there. Ingress to every pod is denied but for the edges of the service map: each gRPC
# port from the workloads the permission table (proto/trenchcoat/v1/*.proto) lets call it, and
# for the router and the feed from pods labelled trenchcoat.io/client=true in any namespace
# (your app); a store's HTTP port from the caches, a cache's from the CDN; etcd, PostgreSQL and
# Redis from the workloads that use them (etcd and PostgreSQL also from the Job shards-init,
# Redis from the Job redis-cluster-init), etcd's peer port and Redis's client and cluster bus
# ports from their own pods; every metrics port from Prometheus; the CDN's HTTP port from
# anywhere (the only entry from outside). Probes come from the node's kubelet.
"""
CERT_MANAGER = "cert-manager.io/v1"
CERTIFICATES_HEADER = """\
# Generated by `python -m trenchcoat.ops.k8s` from trenchcoat/ops/k8s.py (certificates()):
# edit there. A self-signed Issuer only to sign the cluster CA, the CA certificate itself,
# the CA Issuer, and a Certificate per service identity (trenchcoat/tls.py's ROLES): the role
# as its common name, the names its pods are dialled by, written to Secret
# trenchcoat-tls-<role>, renewed a sixth of its life before it expires.
"""


def render() -> str:
    """k8s/base/workloads.yaml, for the ports and drain times of k8s/base/trenchcoat.toml."""
    import yaml  # a dev dependency: only regenerating the files needs it

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (the Job redis-cluster-init's script) as literal blocks."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return HEADER + "".join("---\n" + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=110)
                            for doc in manifests(load(BASE_CONFIG_FILE, {})))


def render_operator_rules() -> str:
    """k8s/observability/operator/prometheusrule.yaml: rules.yml as a PrometheusRule."""
    import yaml

    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "trenchcoat", "namespace": "trenchcoat",
                         "labels": {"app.kubernetes.io/part-of": PART_OF, "release": OPERATOR_RELEASE}},
            "spec": {"groups": groups}}
    return RULE_HEADER + yaml.safe_dump(rule, sort_keys=False, width=110)


SERVED_BY = {"DirectoryService": "directory", "StoreService": "store", "CacheService": "cache",
             "MediaService": "router", "TransformerService": "transformer", "FeedService": "feed",
             "F4Service": "f4", "F4StorageService": "f4-storage", "F4BackoffService": "f4-backoff",
             "F4RebuilderService": "f4-rebuilder", "F4KeyStoreService": "f4-keystore"}
"""The workload serving each service of the contract."""
DEPENDENCY_USERS = {"etcd": ("directory", "store", "router", "feed", "fanout", "f4-keystore", SHARDS_INIT),
                    "postgres": ("router", "feed", "fanout", "f4-keystore", SHARDS_INIT),
                    "redis": ("router", "transformer", "feed", "fanout", REDIS_CLUSTER_INIT)}
"""Which workloads reach each dependency of dependencies.yaml on its client port (those
holding PostgreSQL rows read the shard map from etcd; the Job shards-init stores it, and
reaches nothing else; the Job redis-cluster-init reaches only Redis, whose cluster it forms)."""
PEER_PORTS = {"etcd": (2380,), "redis": (REDIS_PORT, REDIS_BUS_PORT)}
"""The ports a dependency's pods reach one another on: etcd's peer port; a Redis node's
client port (a replica replicates from its primary as a client) and its cluster bus."""
HTTP_CALLERS = {"store": ("cache",), "cache": ("cdn",)}
"""Who reads a workload's HTTP port: the caches a store's needles, the CDN a cache's photos."""
CLIENT_LABEL = "trenchcoat.io/client"
"""Label a pod outside the namespace carries to reach the user-facing services (an app)."""


def grpc_callers() -> dict[str, set[str]]:
    """Served workload -> the workloads whose roles the permission table lets call any of its
    methods, and ``app`` or ``admin`` when those may (callers from outside)."""
    from trenchcoat import permissions

    workload_of_role = {role: w.name for w in WORKLOADS for module, role in tls.ROLE_OF_MODULE.items()
                        if w.module == module}
    callers: dict[str, set[str]] = {}
    for method, roles in permissions.contract().items():
        served = SERVED_BY[method.lstrip("/").split("/")[0].rpartition(".")[2]]
        callers.setdefault(served, set()).update(workload_of_role.get(role, role) for role in roles)
    return callers


def network_policies(config: Config) -> list[dict[str, Any]]:
    """Default-deny ingress for every pod of the namespace, then one allow per edge of the
    service map: each gRPC port from the workloads the permission table lets call it (and,
    for the user-facing services, pods labelled ``trenchcoat.io/client`` in any namespace),
    each HTTP port from its one reader, each dependency from its users, every metrics port
    from Prometheus, the CDN from anywhere: the only entry from outside."""
    meta = {"labels": {"app.kubernetes.io/part-of": PART_OF}}

    def pods(*names: str) -> dict[str, Any]:
        return {"podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                      "values": sorted(names)}]}}

    def policy(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": f"allow-{name}", **meta},
                "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                         "policyTypes": ["Ingress"], "ingress": rules}}

    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    clients = {"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}
    docs: list[dict[str, Any]] = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                   "metadata": {"name": "default-deny-ingress", **meta},
                                   "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}]
    callers = grpc_callers()
    for w in WORKLOADS:
        service: ServiceConfig = getattr(config, w.section)
        inside = sorted(c for c in callers.get(w.name, ()) if c not in ("app", "admin", "prometheus"))
        sources = [pods(*inside)] if inside else []
        if callers.get(w.name, set()) & {"app", "admin"}:
            sources.append(clients)
        rules = [{"from": sources, "ports": [{"port": service.port, "protocol": "TCP"}]}] if sources else []
        if w.name in HTTP_CALLERS:
            rules.append({"from": [pods(*HTTP_CALLERS[w.name])],
                          "ports": [{"port": service.http_port, "protocol": "TCP"}]})  # type: ignore[attr-defined]
        rules.append({"from": [prometheus], "ports": [{"port": service.metrics_port, "protocol": "TCP"}]})
        docs.append(policy(w.name, rules))
    docs.append(policy("cdn", [{"ports": [{"port": config.cdn.port, "protocol": "TCP"}]},
                               {"from": [prometheus], "ports": [{"port": config.cdn.metrics_port, "protocol": "TCP"}]}]))
    for dependency, port in (("etcd", 2379), ("postgres", 5432), ("redis", REDIS_PORT)):
        rules = [{"from": [pods(*DEPENDENCY_USERS[dependency])], "ports": [{"port": port, "protocol": "TCP"}]}]
        if dependency in PEER_PORTS:
            rules.append({"from": [pods(dependency)],
                          "ports": [{"port": p, "protocol": "TCP"} for p in PEER_PORTS[dependency]]})
        docs.append(policy(dependency, rules))
    return docs


def render_network_policies() -> str:
    """k8s/base/network-policies.yaml, for the ports of k8s/base/trenchcoat.toml."""
    import yaml

    return POLICIES_HEADER + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, width=110)
                                     for doc in network_policies(load(BASE_CONFIG_FILE, {})))


def secrets(directory: Path, roles: Iterable[str]) -> str:
    """What a cluster's pods need that must not live in the manifests, as a YAML stream of
    JSON documents for ``kubectl apply -f -`` (``trenchcoat certs --k8s``): the namespace
    (so the stream applies first), each role's identity as Secret ``trenchcoat-tls-<role>``
    (type kubernetes.io/tls with ca.crt: the layout cert-manager writes), the user tokens'
    public key (``trenchcoat-user-tokens``) and the in-cluster PostgreSQL's credentials
    (``trenchcoat-postgres``: a random password, made once in ``directory``, the first
    instance's DSN and the others' as ``shard_dsns``, comma-separated),
    Redis's (``trenchcoat-redis``: the ACL user's password, the URL naming the first node of
    the Redis Cluster, which a cluster client finds the others from, and ``cluster: true``), and the three
    dependencies' server certificates (``trenchcoat-tls-etcd/-postgres/-redis``). The CA's
    key and the tokens' signing key are never in them."""
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": PART_OF}}

    def secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": {"name": name, **meta},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}

    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    public = directory / tokens.PUBLIC_FILE
    if public.exists():
        docs.append(secret(USER_TOKENS_SECRET, {tokens.PUBLIC_FILE: public.read_bytes()}))
    ca_path = f"{TLS_DIR}/{tls.CA_FILE}"  # where every pod finds the CA (tls_volume)
    postgres = tls.password(directory, "postgres")  # every instance's: they share the Secret's password
    dsns = [f"postgresql://trenchcoat:{postgres}@postgres-{i}.postgres:5432/trenchcoat"
            f"?sslmode=verify-full&sslrootcert={ca_path}" for i in range(POSTGRES_INSTANCES)]
    docs.append(secret(POSTGRES_SECRET, {"password": postgres.encode(), "dsn": dsns[0].encode(),
                                         "shard_dsns": ",".join(dsns[1:]).encode()}))
    redis = tls.password(directory, "redis")
    docs.append(secret(REDIS_SECRET, {
        "password": redis.encode(),
        "url": f"rediss://{REDIS_USER}:{redis}@{redis_nodes()[0]}/0?ssl_ca_certs={ca_path}".encode(),
        "cluster": b"true"}))
    for name in tls.DEPENDENCIES:  # their server certificates, for the names they are reached by
        held = tls.names_of(directory, name)
        if not set(certificate_hosts(name)) <= set(held):  # e.g. made by `up` for loopback only
            tls.issue(directory, name, hosts=[*certificate_hosts(name), *held])
        ca, cert, key = tls.Identity(directory, name).read()
        docs.append(secret(f"trenchcoat-tls-{name}", {"ca.crt": ca, "tls.crt": cert, "tls.key": key},
                           "kubernetes.io/tls"))
    for role in roles:
        ca, cert, key = tls.Identity(directory, role).read()
        docs.append(secret(f"trenchcoat-tls-{role}", {"ca.crt": ca, "tls.crt": cert, "tls.key": key},
                           "kubernetes.io/tls"))
    return "".join("---\n" + json.dumps(d, indent=2) + "\n" for d in docs)


def certificate_hosts(role: str) -> list[str]:
    """The names a role's pods are dialled by in the namespace (its Service, each pod of a
    StatefulSet as ``*.<service>``, per-pod Services such as ``cache-0``), then localhost:
    the subject alternative names of its certificate."""
    if role in tls.DEPENDENCIES:  # a StatefulSet behind its headless Service (postgres-1.postgres: *.postgres)
        return [f"{role}-0.{role}", role, f"*.{role}", "localhost", "127.0.0.1"]
    names: list[str] = []
    for w in (*WORKLOADS, CDN):
        if tls.ROLE_OF_MODULE.get(w.module) == role:
            names += [w.name, f"*.{w.name}", *(f"{w.name}-{i}" for i in range(w.replicas) if w.per_pod_services)]
    return [*names, f"*.{NAMESPACE}.svc", f"*.{NAMESPACE}.svc.cluster.local", "localhost", "127.0.0.1"]


def certificates() -> list[dict[str, Any]]:
    """The cert-manager component: a self-signed Issuer that signs only the cluster CA, the CA,
    its Issuer, and a Certificate per role written to Secret trenchcoat-tls-<role>."""
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": PART_OF}}
    key = {"algorithm": "ECDSA", "size": 256}
    docs: list[dict[str, Any]] = [
        {"apiVersion": CERT_MANAGER, "kind": "Issuer", "metadata": {"name": "trenchcoat-selfsigned", **meta},
         "spec": {"selfSigned": {}}},
        {"apiVersion": CERT_MANAGER, "kind": "Certificate", "metadata": {"name": "trenchcoat-ca", **meta},
         "spec": {"isCA": True, "commonName": "trenchcoat cluster CA", "subject": {"organizations": [tls.ORGANISATION]},
                  "secretName": "trenchcoat-ca", "duration": f"{tls.CA_DAYS * 24}h", "privateKey": key,
                  "issuerRef": {"name": "trenchcoat-selfsigned", "kind": "Issuer"}}},
        {"apiVersion": CERT_MANAGER, "kind": "Issuer", "metadata": {"name": "trenchcoat-ca", **meta},
         "spec": {"ca": {"secretName": "trenchcoat-ca"}}},
    ]
    for role in (*tls.ROLES, *tls.DEPENDENCIES):
        hosts = certificate_hosts(role)
        docs.append({"apiVersion": CERT_MANAGER, "kind": "Certificate", "metadata": {"name": f"trenchcoat-tls-{role}", **meta},
                     "spec": {"commonName": role, "subject": {"organizations": [tls.ORGANISATION]},
                              "dnsNames": [h for h in hosts if not h[0].isdigit()],
                              "ipAddresses": [h for h in hosts if h[0].isdigit()],
                              "secretName": f"trenchcoat-tls-{role}", "duration": f"{tls.CERT_DAYS * 24}h",
                              "renewBefore": f"{tls.CERT_DAYS * 24 // 6}h",
                              "usages": ["server auth", "client auth", "digital signature"],
                              "privateKey": {**key, "rotationPolicy": "Always"},
                              "issuerRef": {"name": "trenchcoat-ca", "kind": "Issuer"}}})
    return docs


def render_certificates() -> str:
    """k8s/tls/cert-manager/certificates.yaml."""
    import yaml

    return CERTIFICATES_HEADER + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, width=110)
                                         for doc in certificates())


def generated() -> dict[Path, str]:
    """Every generated file and what it should hold."""
    return {WORKLOADS_FILE: render(), OPERATOR_RULES_FILE: render_operator_rules(),
            CERTIFICATES_FILE: render_certificates(), POLICIES_FILE: render_network_policies()}


def main(argv: list[str]) -> int:
    stale = [path for path, text in generated().items() if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run .venv/bin/python -m trenchcoat.ops.k8s", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
