"""The harness's private dependencies are real servers that really serve."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import aetcd
import aetcd.exceptions
import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

from tests import harness
from trenchcoat import tls
from trenchcoat.errors import TrenchcoatError
from trenchcoat.etcd import Etcd
from trenchcoat.ops import processes

pytestmark = pytest.mark.integration


async def test_etcd_stores_and_returns_a_key(etcd):
    client = Etcd([etcd.endpoint], "harness")  # with this process's certificate, as every service
    try:
        await client.put("test", {"hello": 1})
        got = await client.get("test")
    finally:
        await client.close()
    assert got is not None and got.value == {"hello": 1}


async def test_each_dependency_refuses_a_caller_without_credentials(etcd, postgres, redis_server):
    await refused_without_credentials(etcd.endpoint, postgres.endpoint, redis_server.endpoint)


async def refused_without_credentials(etcd: str, postgres: str, redis: str) -> None:
    """etcd without a client certificate (plaintext, or TLS without one); PostgreSQL without
    TLS, or with a wrong password; Redis in plaintext, without a password, or as the
    default user: each refused."""
    host, port = etcd.split(":")
    with pytest.raises(aetcd.exceptions.ClientError):
        async with aetcd.Client(host=host, port=int(port), timeout=5) as plain:
            await plain.get(b"/trenchcoat/test")
    ca = (harness.tls_dir() / tls.CA_FILE).read_bytes()
    anonymous = Etcd([etcd], "harness", tls=_NoCertificate(harness.tls_dir(), ca), timeout_s=5)
    try:
        with pytest.raises(TrenchcoatError):  # the right CA, no client certificate
            await anonymous.get("test")
    finally:
        await anonymous.close()
    parts = urllib.parse.urlsplit(postgres)
    insecure = parts._replace(query="sslmode=disable").geturl()
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(insecure, timeout=10)
    wrong = parts._replace(netloc=f"{parts.username}:wrong@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(wrong, timeout=10)
    redis_parts = urllib.parse.urlsplit(redis)
    for url in (f"redis://{redis_parts.hostname}:{redis_parts.port}/0",  # plaintext
                redis_parts._replace(netloc=f"{redis_parts.hostname}:{redis_parts.port}").geturl(),  # no password
                redis_parts._replace(netloc=f"default:x@{redis_parts.hostname}:{redis_parts.port}").geturl()):
        client = aioredis.from_url(url, socket_timeout=5)
        try:
            with pytest.raises((aioredis.AuthenticationError, aioredis.ConnectionError, aioredis.ResponseError)):
                await client.set("refused", "1")
        finally:
            await client.aclose()


class _NoCertificate(tls.ClientTls):
    """Trusts the cluster's CA and presents no certificate."""

    def __init__(self, directory: Path, ca: bytes) -> None:
        super().__init__(tls.Identity(directory, "admin"))
        self._ca = ca

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self._ca)


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
    client = Etcd([etcd.endpoint], "harness")
    try:
        await client.put("durable", {"v": 1})
    finally:
        await client.close()
    etcd.restart()
    client = Etcd([etcd.endpoint], "harness")
    try:
        got = await client.get("durable")
        assert got is not None and got.value == {"v": 1}
    finally:
        await client.close()


def test_every_started_process_is_tracked(etcd):
    assert etcd.process in processes.started()
