"""What every benchmark shares: its command line, the private dependencies a cluster
benchmark runs against, and the report (a readable table, then one JSON line)."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trenchcoat import permissions, rpc, tls
from trenchcoat.config import env_key
from trenchcoat.ops import dependencies, ports


def arguments(doc: str, extra: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """``--quick`` and ``--json``, and whatever ``extra`` adds to the parser; then the run's
    identities (``identities``): every benchmark measures clusters as users run them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    identities()
    return args


def identities() -> Path:
    """A CA and every service identity in a temporary directory (removed at exit), named by
    cluster.tls_dir in this process's environment, which every service process a benchmark
    starts inherits (mutual TLS and the permission table on every hop, as by default); the
    benchmark's own calls stand in for the service each method's table names
    (``permissions.StandIn``), with user tokens where a call acts for a user."""
    directory = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    tls.ensure(directory)
    os.environ[TLS_DIR_KEY] = str(directory)
    rpc.use_tls(permissions.StandIn(directory), user_keys=directory)
    return directory


TLS_DIR_KEY = env_key("cluster", "tls_dir")


def https_context(role: str = "admin") -> ssl.SSLContext:
    """The run's ``role`` identity (``identities``) for an HTTPS client: the caches' photo
    ports, the stores' needle ports and /metrics answer certificates of the cluster CA."""
    return tls.ClientTls(tls.Identity(Path(os.environ[TLS_DIR_KEY]), role)).http_context()


@contextmanager
def private_dependencies(prefix: str, *, secure: bool = True) -> Iterator[tuple[Path, str, str]]:
    """A temporary directory with a private etcd and PostgreSQL (fsync off) running:
    (directory, etcd endpoint, PostgreSQL DSN). Everything is removed afterwards.
    ``secure``: taking credentials over TLS (as by default); False for a plaintext
    baseline's (a cluster with cluster.insecure)."""
    with _dependencies(prefix, redis=False, secure=secure) as (tmp, endpoints):
        yield tmp, endpoints[0], endpoints[1]


@contextmanager
def private_dependencies_with_redis(prefix: str) -> Iterator[tuple[Path, str, str, str]]:
    """``private_dependencies`` and a private Redis: (directory, etcd, DSN, Redis URL)."""
    with _dependencies(prefix, redis=True) as (tmp, endpoints):
        yield tmp, endpoints[0], endpoints[1], endpoints[2]


@contextmanager
def _dependencies(prefix: str, *, redis: bool, secure: bool = True) -> Iterator[tuple[Path, list[str]]]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(tmp, 0o755)  # PostgreSQL runs as another user when we are root
    tls_dir = Path(os.environ[TLS_DIR_KEY]) if secure else None  # identities(): credentials, as by default
    deps = [dependencies.etcd_process(tmp / "etcd", tmp / "etcd.log", ports.free_port(), ports.free_port(),
                                      tls_dir=tls_dir),
            dependencies.postgres_process(tmp / "pg", tmp / "pg.log", ports.free_port(), durable=False, tls_dir=tls_dir)]
    if redis:
        deps.append(dependencies.redis_process(tmp / "redis", tmp / "redis.log", ports.free_port(), persistent=False,
                                               tls_dir=tls_dir))
    try:
        for dep in deps:
            dep.start()
        for dep in deps:
            dep.wait_ready(60)
        yield tmp, [dep.endpoint for dep in deps]
    finally:
        for dep in reversed(deps):
            dep.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(figures: dict[str, float], as_json: bool) -> None:
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:>14,.3f}")
    if as_json:
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}))
