"""trenchcoat/kube.py: a store reads its node's zone from the API server with its service
account, and says what to fix when it cannot (a stand-in API server: tests/kubelet.py)."""

from __future__ import annotations

import pytest

from tests import kubelet
from trenchcoat import kube
from trenchcoat.errors import FailedPrecondition, Unavailable

ZONE = "topology.kubernetes.io/zone"
RBAC = [
    {"kind": "ClusterRole", "metadata": {"name": "reader"},
     "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "store-reads-nodes"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
     "subjects": [{"kind": "ServiceAccount", "name": "store", "namespace": "trenchcoat"}]},
]


@pytest.fixture
def api(tmp_path):
    nodes = [kubelet.Node("worker-1", "zone-a"), kubelet.Node("bare", "")]
    with kubelet.FakeApiServer(tmp_path / "api", nodes, RBAC) as server:
        yield server


def env_for(api, tmp_path, account="store"):
    mounted = api.mount(tmp_path / f"sa-{account}", "trenchcoat", account)
    return {**api.env(), kube.SERVICE_ACCOUNT_ENV: str(mounted)}


async def test_the_zone_of_the_node(api, tmp_path):
    assert await kube.node_label("worker-1", ZONE, env_for(api, tmp_path)) == "zone-a"


async def test_what_stops_it_is_named(api, tmp_path):
    env = env_for(api, tmp_path)
    with pytest.raises(FailedPrecondition, match="needs `get` on nodes"):
        await kube.node_label("worker-1", ZONE, env_for(api, tmp_path, account="default"))
    with pytest.raises(FailedPrecondition, match=r"node bare has no topology.kubernetes.io/zone label"):
        await kube.node_label("bare", ZONE, env)
    with pytest.raises(FailedPrecondition, match="knows no node 'gone'"):
        await kube.node_label("gone", ZONE, env)
    with pytest.raises(FailedPrecondition, match="not a Kubernetes pod"):
        await kube.node_label("worker-1", ZONE, {kube.SERVICE_ACCOUNT_ENV: env[kube.SERVICE_ACCOUNT_ENV]})
    with pytest.raises(FailedPrecondition, match=r"spec\.nodeName"):
        await kube.node_label("", ZONE, env)
    with pytest.raises(FailedPrecondition, match="no usable service account"):
        await kube.node_label("worker-1", ZONE, {**env, kube.SERVICE_ACCOUNT_ENV: str(tmp_path / "nowhere")})
    bad_token = tmp_path / "sa-forged"
    bad_token.mkdir()
    (bad_token / "token").write_text("forged")
    (bad_token / "ca.crt").write_bytes((tmp_path / "sa-store" / "ca.crt").read_bytes())
    with pytest.raises(FailedPrecondition, match="refused"):
        await kube.node_label("worker-1", ZONE, {**env, kube.SERVICE_ACCOUNT_ENV: str(bad_token)})


async def test_an_api_server_away_is_unavailable(api, tmp_path):
    env = {**env_for(api, tmp_path), "KUBERNETES_SERVICE_PORT": "1"}
    with pytest.raises(Unavailable, match="did not answer"):
        await kube.node_label("worker-1", ZONE, env, timeout_s=5)
