"""Services started before their dependencies (as Kubernetes starts pods, in any order):
with ``cluster.start_wait_s`` they wait, saying for what, and serve once the dependency
comes up; without it they exit at once with the reason."""

from __future__ import annotations

import shutil
import time

import pytest

from tests import harness
from trenchcoat.ops import dependencies, ports

pytestmark = pytest.mark.integration

WAIT = {"TRENCHCOAT_CLUSTER__START_WAIT_S": "120"}


def waiting(process: harness.ServiceProcess, what: str, timeout: float = 60.0) -> None:
    """Until the process's log says it waits for ``what``; it must not exit meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.process.running(), f"it exited instead of waiting:\n{process.process.log_tail(10)}"
        if "waiting up to" in process.process.log_tail(20) and what in process.process.log_tail(20):
            return
        time.sleep(0.2)
    raise AssertionError(f"no 'waiting for {what}' in its log:\n{process.process.log_tail(20)}")


def test_a_key_store_started_before_postgresql_serves_once_it_is_up(service, tmp_path):
    pg_port, port, metrics_port = ports.free_port(), ports.free_port(), ports.free_port()
    root = harness.open_tempdir("tc-pg-late-")  # PostgreSQL runs as another user when we are root
    postgres = dependencies.postgres_process(root / "data", tmp_path / "pg.log", pg_port, durable=False,
                                             tls_dir=harness.tls_dir())  # made (initdb), not started
    keystore = service("f4-keystore", harness.python_module("f4.keystore"), port=port, metrics_port=metrics_port,
                       wait=False, env={**WAIT, "TRENCHCOAT_POSTGRES__DSN": postgres.endpoint,
                                        "TRENCHCOAT_F4_KEYSTORE__PORT": str(port),
                                        "TRENCHCOAT_F4_KEYSTORE__METRICS_PORT": str(metrics_port)})
    waiting(keystore, "PostgreSQL")
    postgres.start()
    try:
        postgres.wait_ready(60)
        keystore.process.wait_ready(60)  # connected, migrated, SERVING
    finally:
        keystore.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_directory_started_before_etcd_serves_once_it_is_up(service, tmp_path):
    etcd_port, port, metrics_port = ports.free_port(), ports.free_port(), ports.free_port()
    directory = service("directory", harness.python_module("directory"), port=port, metrics_port=metrics_port,
                        wait=False, env={**WAIT, "TRENCHCOAT_ETCD__ENDPOINTS": f"127.0.0.1:{etcd_port}",
                                         "TRENCHCOAT_DIRECTORY__PORT": str(port),
                                         "TRENCHCOAT_DIRECTORY__METRICS_PORT": str(metrics_port),
                                         "TRENCHCOAT_F4__MIGRATE": "false"})
    waiting(directory, "etcd")
    etcd = dependencies.etcd_process(tmp_path / "etcd", tmp_path / "etcd.log", etcd_port, ports.free_port(),
                                     tls_dir=harness.tls_dir())
    etcd.start()
    try:
        etcd.wait_ready(60)
        directory.process.wait_ready(60)
    finally:
        directory.stop()
        etcd.stop()


def test_without_a_start_wait_a_missing_dependency_stops_it_at_once(service):
    pg_port, port, metrics_port = ports.free_port(), ports.free_port(), ports.free_port()
    keystore = service("f4-keystore", harness.python_module("f4.keystore"), port=port, metrics_port=metrics_port,
                       wait=False, env={"TRENCHCOAT_POSTGRES__DSN": f"postgresql://postgres@127.0.0.1:{pg_port}/x",
                                        "TRENCHCOAT_F4_KEYSTORE__PORT": str(port),
                                        "TRENCHCOAT_F4_KEYSTORE__METRICS_PORT": str(metrics_port)})
    assert keystore.process.popen is not None
    assert keystore.process.popen.wait(60) == 2
    assert "cannot reach PostgreSQL" in keystore.process.log_tail(5)
