"""The private Redis Cluster (``dependencies.redis_cluster_processes`` through the
``redis_cluster`` fixture): 3 masters with a replica each, TLS and the ACL user only; a
cluster client reaches every slot from its one URL, and a master killed with -9 is failed
over to its replica without losing what the replica had acknowledged."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from trenchcoat import redisio
from trenchcoat.ops import dependencies, processes

pytestmark = pytest.mark.integration

KEYS = [f"cluster-test:{i}" for i in range(200)]


@pytest.fixture
async def client(redis_cluster):
    await asyncio.to_thread(redis_cluster.wait_ok)
    r = aioredis.RedisCluster.from_url(redis_cluster.endpoint)
    yield r
    await r.aclose()


async def read_all(r: aioredis.RedisCluster) -> list[bytes | str | None]:
    return [await r.get(key) for key in KEYS]


async def test_the_keys_spread_over_every_master_and_read_back(redis_cluster, client):
    masters = {node.port for node in redis_cluster.nodes if node.master}
    assert len(masters) == 3 and len(redis_cluster.nodes) == 6
    serving = [node for node in redis_cluster.cluster.view() if node.master]
    owners = {next(node.port for node in serving if node.serves(key_slot(key.encode()))) for key in KEYS}
    assert owners == masters

    for i, key in enumerate(KEYS):
        await client.set(key, f"v{i}")
    assert await read_all(client) == [f"v{i}".encode() for i in range(len(KEYS))]
    assert await client.dbsize(target_nodes=aioredis.RedisCluster.PRIMARIES) >= len(KEYS)  # summed over the masters


async def test_a_killed_master_is_failed_over_to_its_replica_which_has_every_write(redis_cluster, client):
    for i, key in enumerate(KEYS):
        await client.set(key, f"before-{i}")
    # Every write the masters took is on their replicas before one master dies.
    await asyncio.to_thread(redis_cluster.wait_replicated)

    victim = redis_cluster.kill_master_of(KEYS[0])
    try:
        assert victim.master
        await asyncio.to_thread(redis_cluster.wait_ok)  # its replica promoted, every slot served
        now = {node.port: node.master for node in redis_cluster.nodes}
        assert not now[victim.port] and sum(now.values()) == 3

        assert await read_all(client) == [f"before-{i}".encode() for i in range(len(KEYS))]
        for i, key in enumerate(KEYS):
            await client.set(key, f"after-{i}")
        assert await read_all(client) == [f"after-{i}".encode() for i in range(len(KEYS))]
    finally:
        # The session's cluster whole again: the old master rejoins as its successor's replica.
        redis_cluster.restart(victim)
        await asyncio.to_thread(redis_cluster.wait_ok)

    assert not next(node for node in redis_cluster.nodes if node.port == victim.port).master
    assert await read_all(client) == [f"after-{i}".encode() for i in range(len(KEYS))]


async def test_create_again_keeps_the_cluster_it_finds(redis_cluster):
    before = {node.id: node.port for node in redis_cluster.cluster.view()}
    await asyncio.to_thread(redis_cluster.cluster.create)
    assert {node.id: node.port for node in redis_cluster.cluster.view()} == before


def ping(port: int, context: ssl.SSLContext | None = None) -> bytes:
    """PING (over TLS with ``context``, without logging in): the first bytes answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            s = raw if context is None else context.wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(b"PING\r\n")
            return s.recv(64)
    except OSError:
        return b""


async def test_a_node_takes_only_tls_and_the_acl_user(redis_cluster):
    tls = redis_cluster.cluster.tls
    for node in redis_cluster.nodes:
        assert not ping(node.port).startswith(b"+PONG")  # no plaintext
        assert ping(node.port, ssl.create_default_context(cafile=str(tls.ca))).startswith(b"-NOAUTH")
    with pytest.raises(processes.ProcessError, match="WRONGPASS"):
        dependencies.redis_command("127.0.0.1", redis_cluster.nodes[0].port, "PING",
                                   tls=processes.RedisTls(tls.ca, dependencies.REDIS_USER, "not-the-password"))
    assert dependencies.redis_command("127.0.0.1", redis_cluster.nodes[0].port, "PING", tls=tls) == "PONG"


async def test_a_batch_sends_each_command_to_its_slots_primary_and_a_wrong_guess_is_redirected(redis_cluster):
    await asyncio.to_thread(redis_cluster.wait_ok)
    client = redisio.connect(redis_cluster.endpoint, timeout_s=30.0, cluster=True)
    try:
        keys = [f"batch-test:{{u{i}}}" for i in range(60)]

        def fill(batch: redisio.Batch) -> None:
            for i, key in enumerate(keys):
                batch.add("SET", key, i)

        # The first batch goes before the client knows any slot: it routes them itself.
        assert await redisio.pipelined(client, fill, "a test batch") == [True] * len(keys)
        batch = redisio.Batch(client)
        for key in keys:
            batch.add("GET", key)
        assert await batch.execute() == [str(i).encode() for i in range(len(keys))]
        # A stale guess of the slot's primary (a failover the client has not seen yet): the
        # node answers MOVED and the command goes where its keys say.
        cluster: Any = client
        primaries = cluster.get_primaries()
        cache = cluster.nodes_manager.slots_cache
        wrong = {}
        for key in keys:
            slot = key_slot(key.encode())
            wrong[slot] = cache[slot] = [next(n for n in primaries if n is not cache[slot][0])]
        batch = redisio.Batch(client)
        for key in keys:
            batch.add("INCR", key)
        assert await batch.execute() == [i + 1 for i in range(len(keys))]
        assert all(cache[slot] != nodes for slot, nodes in wrong.items())  # told MOVED, and learned
    finally:
        await client.aclose()
