"""What a process in a Kubernetes pod asks the API server about where it runs.

A store's rack should be its zone (``topology.kubernetes.io/zone``), but the downward API
gives a pod its node's name, not the node's labels: the store reads its node once at start
with the pod's service account (``GET /api/v1/nodes/<name>``, which the ClusterRole
``trenchcoat-node-reader`` of ``k8s/base`` allows), the way rack-aware operators do.
In-cluster conventions: the API server at ``$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``
(the kubelet sets both in every container), the token and CA under the service account's
mount.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from trenchcoat.errors import FailedPrecondition, Unavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts a pod's service account token and the cluster's CA."""
SERVICE_ACCOUNT_ENV = "TRENCHCOAT_SERVICE_ACCOUNT_DIR"
"""Names another directory holding them (the pod start test's stand-in kubelet mounts the
service account elsewhere, having no mount namespace to put it at the standard path)."""


def service_account(env: Mapping[str, str]) -> Path:
    return Path(env.get(SERVICE_ACCOUNT_ENV) or SERVICE_ACCOUNT)


async def node_label(node: str, label: str, env: Mapping[str, str], *, timeout_s: float = 10.0) -> str:
    """The value of ``label`` on ``node``, read from the API server with the pod's service
    account. FailedPrecondition (naming what to fix) when not in a pod, not allowed, or the
    node lacks the label; Unavailable when the API server does not answer."""
    if not node:
        raise FailedPrecondition(f"the node's {label} label is asked for, but which node this runs on is not "
                                 "known: give the pod its node's name (the downward API's spec.nodeName)")
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise FailedPrecondition(f"the node's {label} label is asked for, but this is not a Kubernetes pod "
                                 "(no KUBERNETES_SERVICE_HOST/PORT): set the rack itself instead")
    account = service_account(env)
    try:
        token = (account / "token").read_text().strip()
        context = ssl.create_default_context(cafile=str(account / "ca.crt"))
    except (OSError, ssl.SSLError) as exc:
        raise FailedPrecondition(f"no usable service account token and CA under {account} ({exc}): the pod "
                                 "needs its service account mounted (automountServiceAccountToken)") from None
    base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    url = f"{base}/api/v1/nodes/{node}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                session.get(url, headers={"Authorization": f"Bearer {token}"}, ssl=context) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"the Kubernetes API server at {base} did not answer GET {url}: {exc!r}") from None
    if status in (401, 403):
        raise FailedPrecondition(f"the API server refused to show node {node} ({status}): the pod's service "
                                 "account needs `get` on nodes (k8s/base's ClusterRole trenchcoat-node-reader)")
    if status == 404:
        raise FailedPrecondition(f"the API server knows no node {node!r}")
    if status != 200:
        raise Unavailable(f"the API server answered {status} to GET {url}: {body[:200]!r}")
    try:
        labels = json.loads(body)["metadata"].get("labels", {})
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"the API server's answer for node {node} is not a Node: {exc!r}") from None
    value = labels.get(label, "")
    if not value:
        raise FailedPrecondition(f"node {node} has no {label} label (it has {sorted(labels)}): label the node, "
                                 "or set the rack itself")
    return str(value)
