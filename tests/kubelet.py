"""k8s/ without a Kubernetes node: render the overlays with kustomize, and run a rendered
workload's pods as local processes the way a kubelet would.

``PodRunner`` is a stand-in kubelet and scheduler for the pod start test: each pod gets a
loopback address of its own as its pod IP (so six stores can all listen on 7200, as six
pods do), the cluster's DNS names map to those addresses (a StatefulSet pod's
``store-3.store``, a Service's name to the first pod it selects, the dependencies' names to
the private instances the test runs instead of their images), environment variables are
resolved as the kubelet does (values with ``$(VAR)``, the downward API, Secret and
ConfigMap keys), volumes become temporary directories (a ConfigMap volume holds its keys as
files), and the container's own command runs with exactly that environment. Binding
``0.0.0.0`` in a pod means "all of the pod's addresses", so ``cluster.host`` becomes the
pod's own address here; that and the mapped names and paths are the only differences.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trenchcoat import procs

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S = REPO_ROOT / "k8s"
OVERLAYS = ("kind", "minikube")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
NAMESPACE = "trenchcoat"


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl not found: `make test` installs it (make kubectl)"
    return found


def render(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize path`` as a list of documents."""
    out = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def container(workload: Mapping[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container per pod"
    return containers[0]


def config_map_data(docs: list[dict[str, Any]], prefix: str) -> tuple[str, dict[str, str]]:
    """The ConfigMap whose name starts with ``prefix`` (kustomize adds a hash): name, data."""
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, f"one ConfigMap {prefix}*, found {[d['metadata']['name'] for d in found]}"
    return found[0]["metadata"]["name"], found[0]["data"]


def secret_data(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """A Secret's keys, by its rendered name or the name before kustomize's hash suffix."""
    secrets = by_kind(docs, "Secret")
    secret = secrets.get(name) or next(s for n, s in secrets.items() if n.rpartition("-")[0] == name)
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()} | secret.get("stringData", {})


def selects(selector: Mapping[str, str], workload: Mapping[str, Any], pod_name: str | None = None) -> bool:
    """Whether a Service/PDB selector picks the workload's pods (one pod of it, by name)."""
    labels = dict(workload["spec"]["template"]["metadata"].get("labels", {}))
    wanted = dict(selector)
    pod = wanted.pop("statefulset.kubernetes.io/pod-name", None)
    if pod is not None:
        if workload["kind"] != "StatefulSet":
            return False
        names = {f"{workload['metadata']['name']}-{i}" for i in range(workload["spec"]["replicas"])}
        if pod not in names or (pod_name is not None and pod != pod_name):
            return False
    return all(labels.get(k) == v for k, v in wanted.items())


ADDRESS = re.compile(r"(?<![\w.-])([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?):(\d+)")


@dataclass
class Pod:
    name: str
    workload: dict[str, Any]
    ordinal: int
    ip: str
    node: str
    root: Path
    process: procs.ManagedProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)


@dataclass
class Node:
    name: str
    zone: str


class PodRunner:
    """Runs rendered pods as local processes (see the module's docstring)."""

    def __init__(self, docs: list[dict[str, Any]], nodes: list[Node], root: Path,
                 dependencies: Mapping[str, str]) -> None:
        """``dependencies``: DNS host:port of a dependency's pod or Service -> the local
        host:port that stands in for it."""
        self.docs = docs
        self.nodes = nodes
        self.root = root
        self.addresses: dict[str, str] = {}
        """DNS name -> pod IP (ports stay as they are)."""
        self.moved = dict(dependencies)
        self.pods: dict[str, list[Pod]] = {}
        self._next_ip = 1

    # --- scheduling and addresses --------------------------------------------------------

    def place(self, workload: dict[str, Any]) -> list[Pod]:
        """Creates the workload's pods: a pod IP each, a node by the zone spread (the zone
        with the fewest of its pods, as maxSkew 1 asks), their DNS names."""
        name, replicas = workload["metadata"]["name"], workload["spec"]["replicas"]
        stateful = workload["kind"] == "StatefulSet"
        pods = []
        per_zone = {n.zone: 0 for n in self.nodes}
        for i in range(replicas):
            zone = min(per_zone, key=lambda z: (per_zone[z], z))
            per_zone[zone] += 1
            node = next(n for n in self.nodes if n.zone == zone)
            ip = f"127.88.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
            self._next_ip += 1
            pod_name = f"{name}-{i}" if stateful else f"{name}-7d4b9c6f5-{i:05d}"
            pod = Pod(pod_name, workload, i, ip, node.name, self.root / pod_name)
            pods.append(pod)
            if stateful:
                self.addresses[f"{pod_name}.{workload['spec']['serviceName']}"] = ip
        self.pods[name] = pods
        for service in by_kind(self.docs, "Service").values():
            selector = service["spec"].get("selector") or {}
            if service["metadata"]["name"] in self.addresses or not selector:
                continue
            chosen = [p for p in pods if selects(selector, workload, p.name)]
            if chosen:
                self.addresses[service["metadata"]["name"]] = chosen[0].ip
        return pods

    def map_text(self, text: str) -> str:
        """Cluster addresses in ``text`` -> local ones."""
        def swap(match: re.Match[str]) -> str:
            address = match.group(0)
            if address in self.moved:
                return self.moved[address]
            host, port = match.group(1), match.group(2)
            for suffix in (f".{NAMESPACE}.svc.cluster.local", f".{NAMESPACE}.svc", f".{NAMESPACE}"):
                host = host.removesuffix(suffix)
            return f"{self.addresses[host]}:{port}" if host in self.addresses else address
        return ADDRESS.sub(swap, text)

    # --- running -------------------------------------------------------------------------

    def start(self, pod: Pod) -> None:
        spec = pod.workload["spec"]["template"]["spec"]
        c = container(pod.workload)
        mounts = self._volumes(pod, spec, c)
        env = {"PATH": os.environ["PATH"], "HOME": str(pod.root), "LANG": "C.UTF-8",
               "PYTHONPATH": str(REPO_ROOT), "HOSTNAME": pod.name}  # what the runtime gives a container
        for var in c.get("env", []):
            env[var["name"]] = self._map_paths(self.map_text(self._env_value(pod, var, env)), mounts)
        # 0.0.0.0 in a pod is the pod's own addresses: here, its loopback address.
        env["TRENCHCOAT_CLUSTER__HOST"] = pod.ip
        if "/tmp" in mounts:
            env["TMPDIR"] = mounts["/tmp"]
        argv = [_expand(a, env) for a in [*c.get("command", []), *c.get("args", [])]]
        argv = [sys.executable if a == "python" else self._map_paths(a, mounts) for a in argv]
        pod.env, pod.argv = env, argv
        kind, port, path = probe_of(c["readinessProbe"])
        ready = (procs.grpc_health_probe(f"{pod.ip}:{port}") if kind == "grpc"
                 else procs.http_probe(f"http://{pod.ip}:{port}{path}"))
        pod.process = procs.ManagedProcess(name=pod.name, kind=kind, argv=argv, log_path=pod.root / "log",
                                           ready=ready, endpoint=f"{pod.ip}:{port}", env=env)
        pod.process.start()

    def _volumes(self, pod: Pod, spec: Mapping[str, Any], c: Mapping[str, Any]) -> dict[str, str]:
        """Each volume mount as a directory of the pod's; ConfigMap volumes filled with their
        keys (addresses and mount paths mapped). Returns mount path -> directory."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: str(pod.root / "volumes" / m["name"]) for m in c.get("volumeMounts", [])}
        for m in c.get("volumeMounts", []):
            Path(mounts[m["mountPath"]]).mkdir(parents=True, exist_ok=True)
        for m in c.get("volumeMounts", []):
            volume = volumes.get(m["name"], {})
            if "configMap" in volume:
                data = by_kind(self.docs, "ConfigMap")[volume["configMap"]["name"]]["data"]
                for key, text in data.items():
                    (Path(mounts[m["mountPath"]]) / key).write_text(self._map_paths(self.map_text(text), mounts))
            else:  # an emptyDir or a PersistentVolumeClaim (a volumeClaimTemplate): a fresh directory
                assert "emptyDir" in volume or any(t["metadata"]["name"] == m["name"] for t in
                                                   pod.workload["spec"].get("volumeClaimTemplates", [])), \
                    f"{pod.name}: volume {m['name']} is neither an emptyDir, a ConfigMap nor a claim"
        return mounts

    def _env_value(self, pod: Pod, var: Mapping[str, Any], env: Mapping[str, str]) -> str:
        if "value" in var:
            return _expand(var["value"], env)
        source = var["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            labels = pod.workload["spec"]["template"]["metadata"].get("labels", {})
            if pod.workload["kind"] == "StatefulSet":
                labels = {**labels, "apps.kubernetes.io/pod-index": str(pod.ordinal),
                          "statefulset.kubernetes.io/pod-name": pod.name}
            fields = {"metadata.name": pod.name, "metadata.namespace": NAMESPACE, "spec.nodeName": pod.node,
                      "status.podIP": pod.ip, **{f"metadata.labels['{k}']": v for k, v in labels.items()}}
            return fields[path]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return secret_data(self.docs, ref["name"])[ref["key"]]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str(by_kind(self.docs, "ConfigMap")[ref["name"]]["data"][ref["key"]])
        raise AssertionError(f"{pod.name}: env {var['name']}: no stand-in for {source}")

    @staticmethod
    def _map_paths(text: str, mounts: Mapping[str, str]) -> str:
        if not mounts:
            return text
        paths = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
        return re.sub(rf'(?<![\w/.-])({paths})(?=$|/|")', lambda m: mounts[m.group(1)], text)  # one pass

    def wait_ready(self, pods: Iterable[Pod], timeout: float) -> None:
        for pod in pods:
            assert pod.process is not None
            try:
                pod.process.wait_ready(timeout)
            except Exception as exc:
                raise AssertionError(f"pod {pod.name} did not become ready: {exc}\n"
                                     f"argv: {pod.argv}\nlog:\n{pod.process.log_tail(30)}") from exc

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM to every pod at once (a namespace deleted), SIGKILL to any still running
        after its terminationGracePeriodSeconds, as the kubelet does; pod -> exit code."""
        running = [p for pods in self.pods.values() for p in pods if p.process is not None]

        def stop(pod: Pod) -> int | None:
            assert pod.process is not None
            return pod.process.stop(timeout=pod.workload["spec"]["template"]["spec"].get(
                "terminationGracePeriodSeconds", 30))

        with ThreadPoolExecutor(max_workers=max(len(running), 1)) as pool:
            return dict(zip((p.name for p in running), pool.map(stop, running), strict=True))


def probe_of(probe: Mapping[str, Any]) -> tuple[str, int, str]:
    """(grpc|http, port, path) of a probe."""
    if "grpc" in probe:
        return "grpc", int(probe["grpc"]["port"]), ""
    if "httpGet" in probe:
        return "http", int(probe["httpGet"]["port"]), probe["httpGet"].get("path", "/")
    raise AssertionError(f"a probe this stand-in cannot run: {probe}")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, others left as they are."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def kind_nodes() -> list[Node]:
    """The kind cluster's workers (k8s/overlays/kind/kind-cluster.yaml), named as kind names them."""
    cluster = yaml.safe_load((K8S / "overlays" / "kind" / "kind-cluster.yaml").read_text())
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    names = [f"{cluster['name']}-worker{'' if i == 0 else i + 1}" for i in range(len(workers))]
    return [Node(name, n.get("labels", {}).get("topology.kubernetes.io/zone", "")) for name, n in zip(names, workers,
                                                                                                      strict=True)]

