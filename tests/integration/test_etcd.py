"""trenchcoat/etcd.py against a real etcd (tests/unit/test_etcd.py has LeasedKey's loop
against a stand-in): a client takes up a rotated identity without a restart, even a new
CA that the restarted etcd now requires, and its election and the map view's watch carry
on through it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from directory.model import Replica, State, Volume
from directory.state import DirectoryState
from directory.view import MapView
from tests.cluster import eventually
from trenchcoat import tls
from trenchcoat.errors import Unavailable
from trenchcoat.etcd import Etcd, LeasedKey
from trenchcoat.ops import dependencies, ports, processes

pytestmark = pytest.mark.integration

WAIT_S = 90.0
"""Bound on every wait: an etcd restart, a recheck of the identity files, a worker's backoff."""
LEASE_TTL_S = 120
"""Longer than any wait here: a lease that lapses was lost by the client, not by a slow machine."""
ROLE = "directory"


def _etcd(root: Path, tls_dir: Path, port: int, peer_port: int) -> processes.ManagedProcess:
    """etcd on ``root``'s data with the identities now in ``tls_dir`` (read at its start)."""
    return dependencies.etcd_process(root / "data", root / "etcd.log", port, peer_port, tls_dir=tls_dir)


def _started(process: processes.ManagedProcess) -> processes.ManagedProcess:
    process.start()
    process.wait_ready(WAIT_S)
    return process


def _rotate_ca(tls_dir: Path) -> None:
    """A new cluster CA, and etcd's and the client's certificates re-issued under it."""
    for name in (tls.CA_FILE, tls.CA_KEY_FILE):
        (tls_dir / name).unlink()
    tls.make_ca(tls_dir)
    tls.issue(tls_dir, "etcd")
    tls.issue(tls_dir, ROLE)


def _volume(volume_id: int) -> Volume:
    return Volume(id=volume_id, replicas=(Replica(1, volume_id),), state=State.WRITABLE, capacity_bytes=1 << 30,
                  created_ms=0)


async def _sees(changes: asyncio.Queue[int], volume_id: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while await changes.get() != volume_id:
            pass


async def test_a_client_carries_on_after_its_ca_and_certificate_are_rotated_and_etcd_restarted(tmp_path):
    tls_dir, old = tmp_path / "tls", tmp_path / "old"
    tls.make_ca(tls_dir)
    tls.issue(tls_dir, "etcd")
    tls.issue(tls_dir, ROLE)
    old.mkdir()
    for name in (tls.CA_FILE, f"{ROLE}.crt", f"{ROLE}.key"):
        shutil.copy(tls_dir / name, old / name)
    port, peer_port = ports.free_port(), ports.free_port()
    server = await asyncio.to_thread(_started, _etcd(tmp_path, tls_dir, port, peer_port))
    client = Etcd([server.endpoint], "rotation", tls=tls.ClientTls(tls.Identity(tls_dir, ROLE)), timeout_s=5)
    election = LeasedKey(client, "leader", LEASE_TTL_S, lambda: {"name": "d1"})
    view = MapView(DirectoryState(client), interval_s=0.2)
    changes: asyncio.Queue[int] = asyncio.Queue()

    async def follow() -> None:
        async for _, volumes, _ in view.watch():
            for volume in volumes:
                changes.put_nowait(volume.id)

    tasks: list[asyncio.Task[None]] = []
    try:
        tasks.append(asyncio.create_task(election.run()))
        async with asyncio.timeout(WAIT_S):
            await election.held.wait()
        lease = election.lease
        await view.load()
        tasks += [asyncio.create_task(view.run()), asyncio.create_task(follow())]
        await client.put("before", {"v": 1})
        await DirectoryState(client).add_volume(_volume(1))
        await _sees(changes, 1)

        # A new CA: etcd restarted on it trusts only certificates it signed.
        await asyncio.to_thread(_rotate_ca, tls_dir)
        await asyncio.to_thread(server.stop)
        server = await asyncio.to_thread(_started, _etcd(tmp_path, tls_dir, port, peer_port))
        stale = Etcd([server.endpoint], "rotation", tls=tls.ClientTls(tls.Identity(old, ROLE)), timeout_s=5)
        try:
            with pytest.raises(Unavailable):
                await stale.get("before")
        finally:
            await stale.close()

        # The same client object: reads, writes, its lease and the watch over it carry on.
        got = await eventually(lambda: client.get("before"), WAIT_S, "the client to read through the new CA")
        assert got.value == {"v": 1}
        await client.put("after", {"v": 2})
        assert (got := await client.get("after")) is not None and got.value == {"v": 2}
        await DirectoryState(client).add_volume(_volume(2))
        await _sees(changes, 2)
        assert await client.refresh(lease)
        assert election.lease == lease and election.held.is_set()
        leader = await client.get("leader")
        assert leader is not None and leader.lease == lease
    finally:
        await view.shutdown()
        await election.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await asyncio.to_thread(server.stop)
