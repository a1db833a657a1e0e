"""Session-wide fixtures: private etcd, PostgreSQL and Redis servers started from the
Debian packages on free loopback ports, a service-process factory, and the check that no
process started by the tests outlives the session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests import cluster, harness
from trenchcoat import permissions, rpc, tls
from trenchcoat.ops import processes

# The machine is shared and noisy: no per-example deadlines.
settings.register_profile(
    "trenchcoat", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "trenchcoat"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under two workers (make test: --dist loadgroup) each module's tests stay together on
    one worker, in order, as modules that share a cluster expect (one cluster per module,
    not one per worker); modules marked with a group of their own (the default ports) share it."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(name=item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries its services' last warnings and errors."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for name in ("service", "module_service"):
        services = getattr(item, "funcargs", {}).get(name)
        if isinstance(services, harness.Services) and (text := services.complaints()):
            report.sections.append((f"warnings and errors the services logged ({name})", text))


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """After every other fixture is torn down, nothing the tests started may still run."""
    yield
    left = harness.leftover_processes()
    for process in processes.started():
        process.kill_group()
    assert not left, f"processes left running after the test session: {left}"


@pytest.fixture(scope="session", autouse=True)
def tls_everywhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every cluster of the session runs as a user's does: mutual TLS and the permission
    table on every gRPC hop, with one CA and every identity in a session directory
    (cluster.tls_dir, which each service process the tests start inherits). The tests
    call as a stand-in for the service each method's table names (``permissions.StandIn``):
    a store's writes as its router, a directory's reports as its stores; and an upload, a
    post or a follow with a token for the user it names."""
    directory = tmp_path_factory.mktemp("tls")
    tls.ensure(directory)
    os.environ[harness.TLS_DIR_KEY] = cluster.FAST[harness.TLS_DIR_KEY] = str(directory)
    # Calls acting for a user carry a token for the user the request names, as an app's would.
    rpc.use_tls(permissions.StandIn(directory), user_keys=directory)
    try:
        yield
    finally:
        rpc.use_tls(None)
        del cluster.FAST[harness.TLS_DIR_KEY], os.environ[harness.TLS_DIR_KEY]


@pytest.fixture(scope="session")
def etcd() -> Iterator[harness.Dependency]:
    dep = harness.start_etcd()
    yield dep
    dep.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[harness.Dependency]:
    dep = harness.start_postgres()
    yield dep
    dep.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[harness.Dependency]:
    dep = harness.start_redis()
    yield dep
    dep.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[harness.RedisClusterDependency]:
    """A Redis Cluster of 3 masters with a replica each, beside ``redis_server``."""
    dep = harness.start_redis_cluster()
    yield dep
    dep.stop()


@pytest.fixture(autouse=True)
async def one_channel_pool_for_polls() -> AsyncIterator[None]:
    """Every poll of a test (``tests.cluster``'s ``volumes``, ``stores_seen``, ``leader``)
    shares one channel pool, closed when the test ends."""
    async with cluster.polling_pools():
        yield


@pytest.fixture
def private_redis() -> Iterator[harness.Dependency]:
    """A Redis of this test's own (beside the session's, which a module's shared cluster may
    be using): for a test that restarts or empties it, or a cluster that must not share it."""
    dep = harness.start_redis()
    yield dep
    dep.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., harness.ServiceProcess]]:
    """Starts service processes for one test (``service(name, argv, port=..., ...)``)
    and stops whichever are still running afterwards, all at once."""
    services = harness.Services(tmp_path / "logs")
    yield services
    services.stop_all()


@pytest.fixture(scope="module")
def module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Services]:
    """``service`` for a cluster a whole module shares (tests that only read and write
    through the public contract, each with ids of its own)."""
    services = harness.Services(tmp_path_factory.mktemp("shared") / "logs")
    yield services
    services.stop_all()
