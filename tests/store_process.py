"""Starting a real store process for integration and fault tests."""

from __future__ import annotations

from pathlib import Path

from tests import harness
from trenchcoat.ops import ports


def store_env(data_dir: Path, port: int, metrics_port: int, **extra: str) -> dict[str, str]:
    env = {
        "TRENCHCOAT_CLUSTER__DATA_DIR": str(data_dir),
        "TRENCHCOAT_STORE__PORT": str(port),
        "TRENCHCOAT_STORE__METRICS_PORT": str(metrics_port),
        "TRENCHCOAT_STORE__MACHINE_ID": "1",
        "TRENCHCOAT_STORE__HTTP_PORT": "0",  # needle reads over HTTP on any free port
        "TRENCHCOAT_STORE__COUNT": "1",  # one process on its own free ports
        "TRENCHCOAT_STORE__DRAIN_NOTICE_S": "0",
        "TRENCHCOAT_STORE__MAX_NEEDLE_BYTES": str(1024 * 1024),
        "TRENCHCOAT_STORE__VOLUME_CAPACITY_BYTES": str(64 * 1024 * 1024),
    }
    env.update(extra)
    return env


def start_store(service, data_dir: Path, port: int | None = None, metrics_port: int | None = None, **extra: str):
    port = port or ports.free_port()
    metrics_port = metrics_port or ports.free_port()
    return service(
        "store",
        harness.python_module("store"),
        port=port,
        metrics_port=metrics_port,
        env=store_env(data_dir, port, metrics_port, **extra),
    )
