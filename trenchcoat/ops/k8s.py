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

Readiness, liveness and startup probes are native gRPC probes on each process's
``grpc.health.v1`` service; termination grace covers the drain notice and grace period;
pods carry ``prometheus.io/*`` annotations for a plain Prometheus (the Prometheus Operator's
PodMonitor is in ``k8s/observability/operator``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trenchcoat.config import Config, ServiceConfig, env_key, load
from trenchcoat.f4_types import PARITY_BLOCKS as F4_PARITY

IMAGE = "trenchcoat"
"""The image's name in the manifests; overlays pin its tag with kustomize ``images:``."""
CONFIG_DIR = "/etc/trenchcoat"
CONFIG_FILE = f"{CONFIG_DIR}/trenchcoat.toml"
DATA_DIR = "/data"
"""cluster.data_dir in the pods: a PersistentVolume for stateful workloads, an emptyDir else."""
UID = 10001
"""The image's non-root user."""
ZONE = "topology.kubernetes.io/zone"
PART_OF = "trenchcoat"


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
    """Its processes use PostgreSQL: the pod gets the DSN from the Secret (no other does)."""
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
    Workload("transformer", "transformer", "transformer", 2, cpu="250m", memory="512Mi", memory_limit="2Gi"),
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
    Workload("feed", "feed", "feedsvc", 2, postgres=True),
    Workload("fanout", "fanout", "feedsvc.worker", 2, postgres=True),
    Workload("router", "router", "router", 2, cpu="100m", memory="256Mi", memory_limit="1Gi", postgres=True),
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


def _probe(kind: str, port: int, *, period: int, failures: int) -> dict[str, Any]:
    action = {"grpc": {"port": port}} if kind == "grpc" else {"httpGet": {"path": "/cdn-health", "port": port}}
    return {**action, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


def _pod(w: Workload, ports: list[dict[str, Any]], probe: tuple[str, int], metrics_port: int | None,
         grace_s: int) -> dict[str, Any]:
    kind, probe_port = probe
    by_key = {("port" if p["name"] == "grpc" else f"{p['name']}_port"): p["containerPort"] for p in ports}
    dsn = [{"name": env_key("postgres", "dsn"),
            "valueFrom": {"secretKeyRef": {"name": "trenchcoat-postgres", "key": "dsn"}}}] if w.postgres else []
    env = [field_env("POD_NAME", "metadata.name"),
           {"name": "TRENCHCOAT_CONFIG", "value": CONFIG_FILE},
           *dsn,
           *({**e, "value": e["value"].format(**by_key)} if "value" in e else e for e in w.env)]
    container = {
        "name": w.name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", w.module],
        "env": env,
        "ports": ports,
        "startupProbe": _probe(kind, probe_port, period=2, failures=math.ceil(w.startup_s / 2)),
        "readinessProbe": _probe(kind, probe_port, period=5, failures=2),
        "livenessProbe": _probe(kind, probe_port, period=10, failures=6),
        "resources": {"requests": {"cpu": w.cpu, "memory": w.memory}, "limits": {"memory": w.memory_limit}},
        "securityContext": _security(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": "trenchcoat-config"}},
                                     {"name": "tmp", "emptyDir": {}}]
    if not w.storage:
        volumes.append({"name": "data", "emptyDir": {}})
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
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
                               "prometheus.io/path": "/metrics"}
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
            probe, metrics_port = ("grpc", service.port), service.metrics_port
            grace = math.ceil(service.drain_notice_s + service.grace_period_s) + 5
        docs.extend(_workload(w, ports, probe, metrics_port, grace))
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


HEADER = """\
# Generated by `python -m trenchcoat.ops.k8s` from trenchcoat/ops/k8s.py (a test checks it is
# current): every trenchcoat service as its own workload, with its Services and
# PodDisruptionBudget. Change trenchcoat/ops/k8s.py, not this file; overlays patch it.
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


def render() -> str:
    """k8s/base/workloads.yaml, for the ports and drain times of k8s/base/trenchcoat.toml."""
    import yaml  # a dev dependency: only regenerating the files needs it

    return HEADER + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, width=110)
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


def generated() -> dict[Path, str]:
    """Every generated file and what it should hold."""
    return {WORKLOADS_FILE: render(), OPERATOR_RULES_FILE: render_operator_rules()}


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
