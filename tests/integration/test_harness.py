"""The harness's private dependencies are real servers that really serve."""

from __future__ import annotations

import aetcd
import asyncpg
import pytest
import redis.asyncio as aioredis

from trenchcoat.ops import processes

pytestmark = pytest.mark.integration


async def test_etcd_stores_and_returns_a_key(etcd):
    host, port = etcd.endpoint.split(":")
    async with aetcd.Client(host=host, port=int(port)) as client:
        await client.put(b"/trenchcoat/test", b"hello")
        got = await client.get(b"/trenchcoat/test")
    assert got.value == b"hello"


async def test_postgres_runs_sql_in_the_trenchcoat_database(postgres):
    conn = await asyncpg.connect(postgres.endpoint)
    try:
        assert await conn.fetchval("SELECT current_database()") == "trenchcoat"
        # A media_id past 2^63 is stored shifted into bigint range (see trenchcoat.ids).
        await conn.execute("CREATE TEMP TABLE t (id bigint PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES ($1)", (1 << 63) - 1)
        assert await conn.fetchval("SELECT max(id) FROM t") == (1 << 63) - 1
    finally:
        await conn.close()


async def test_redis_keeps_sorted_sets(redis_server):
    client = aioredis.from_url(redis_server.endpoint)
    try:
        await client.zadd("timeline:1", {"a": 1, "b": 2})
        assert await client.zrevrange("timeline:1", 0, -1) == [b"b", b"a"]
    finally:
        await client.aclose()


def test_dependencies_listen_on_loopback_ports_of_their_own(etcd, postgres, redis_server):
    ports = {etcd.endpoint.rsplit(":", 1)[1], postgres.endpoint.rsplit(":", 1)[1].split("/")[0],
             redis_server.endpoint.rsplit(":", 1)[1].split("/")[0]}
    assert len(ports) == 3
    assert not ports & {"2379", "5432", "6379"}  # never the machine's own servers


async def test_a_restarted_etcd_keeps_its_data(etcd):
    host, port = etcd.endpoint.split(":")
    async with aetcd.Client(host=host, port=int(port)) as client:
        await client.put(b"/trenchcoat/durable", b"1")
    etcd.restart()
    async with aetcd.Client(host=host, port=int(port)) as client:
        assert (await client.get(b"/trenchcoat/durable")).value == b"1"


def test_every_started_process_is_tracked(etcd):
    assert etcd.process in processes.started()
