"""f4's key store as a real process on a real PostgreSQL: one key per blob, idempotent,
durable across a kill -9; a discard is NOT_FOUND at once and for good; its /metrics count
the keys made and discarded; and, in process, a read racing a discard never puts the
discarded key back in the cache."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from prometheus_client import REGISTRY

from f4.keystore.keys import Keys
from tests import harness
from tests.cluster import fresh_database
from trenchcoat import rpc
from trenchcoat.clients.f4 import KeyStoreClient
from trenchcoat.errors import FailedPrecondition, NotFound
from trenchcoat.ops import ports

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
MEDIA = (1 << 63) + 12345  # an id with the top bit set: stored through to_signed


def start_keystore(service, dsn, port, metrics_port):
    return service("f4-keystore", harness.python_module("f4.keystore"), port=port, metrics_port=metrics_port, env={
        "TRENCHCOAT_POSTGRES__DSN": dsn,
        "TRENCHCOAT_F4_KEYSTORE__PORT": str(port),
        "TRENCHCOAT_F4_KEYSTORE__METRICS_PORT": str(metrics_port),
        "TRENCHCOAT_F4_KEYSTORE__DRAIN_NOTICE_S": "0",
    })


async def test_keys_are_made_once_kept_across_a_crash_and_discarded_for_good(service, postgres):
    dsn = await fresh_database(postgres.endpoint)
    port, mport = ports.free_port(), ports.free_port()
    proc = start_keystore(service, dsn, port, mport)
    async with rpc.ChannelPool() as pool:
        keys = KeyStoreClient(pool, proc.address, timeout_s=TIMEOUT_S)
        original = await keys.create_key(MEDIA, 0)
        assert len(original) == 32 and await keys.create_key(MEDIA, 0) == original  # idempotent
        thumb = await keys.create_key(MEDIA, 1)
        other = await keys.create_key(MEDIA + 1, 0)
        assert len({original, thumb, other}) == 3
        with pytest.raises(NotFound, match="has no warm key"):
            await keys.get_key(MEDIA, 2)
    assert "trenchcoat_f4_keys_created_total 3.0" in harness.scrape(proc.metrics_url)  # the repeat made none
    proc.kill()
    proc = start_keystore(service, dsn, port, mport)
    async with rpc.ChannelPool() as pool:
        keys = KeyStoreClient(pool, proc.address, timeout_s=TIMEOUT_S)
        assert await keys.get_key(MEDIA, 0) == original  # durable, not just cached
        assert await keys.discard_key(MEDIA, None) == 2  # every rendition
        for alt in (0, 1):
            with pytest.raises(NotFound, match="was deleted"):
                await keys.get_key(MEDIA, alt)
        with pytest.raises(FailedPrecondition, match="not encrypted again"):
            await keys.create_key(MEDIA, 0)
        assert await keys.discard_key(MEDIA, 0) == 0  # already gone
        assert await keys.get_key(MEDIA + 1, 0) == other  # the neighbour is untouched
        # A media deleted before any of its blobs had a key (its volume still being
        # encoded) is never given one afterwards, for any rendition.
        assert await keys.discard_key(MEDIA + 2, None) == 0
        for alt in (0, 3):
            with pytest.raises(FailedPrecondition, match="not encrypted again"):
                await keys.create_key(MEDIA + 2, alt)
    metrics = harness.scrape(proc.metrics_url)
    # Two renditions' keys, once each: discarding again, or a media with no keys yet, adds none.
    assert "trenchcoat_f4_keys_discarded_total 2.0" in metrics
    assert "trenchcoat_f4_keys_created_total 0.0" in metrics  # this process made none: refused ones are not counted
    conn = await asyncpg.connect(dsn)
    try:
        left = await conn.fetch("SELECT blob_key FROM f4_keys WHERE blob_key = ANY($1::bytea[])",
                                [original, thumb])
    finally:
        await conn.close()
    assert left == []  # the key bytes are gone from the table, not only hidden


class SlowReads:
    """A connection whose fetchrow waits until released: a read caught mid-flight."""

    def __init__(self, conn, arrived: asyncio.Event, gate: asyncio.Event) -> None:
        self._conn, self._arrived, self._gate = conn, arrived, gate

    def __getattr__(self, name):
        return getattr(self._conn, name)

    async def fetchrow(self, *args):
        row = await self._conn.fetchrow(*args)
        self._arrived.set()
        await self._gate.wait()
        return row


async def test_a_read_racing_a_discard_never_caches_the_discarded_key(postgres, monkeypatch):
    dsn = await fresh_database(postgres.endpoint)
    keys = await Keys.connect(dsn, timeout_s=TIMEOUT_S)
    try:
        await keys.migrate()
        await keys.create(MEDIA, 0)
        keys._cache.clear()  # the next read goes to the database
        arrived, gate = asyncio.Event(), asyncio.Event()
        plain_db = keys._db_for

        def slow_db(shard, what):
            manager = plain_db(shard, what)

            class Wrapped:
                async def __aenter__(self):
                    return SlowReads(await manager.__aenter__(), arrived, gate)

                async def __aexit__(self, *exc):
                    return await manager.__aexit__(*exc)

            return Wrapped()

        monkeypatch.setattr(keys, "_db_for", slow_db)  # for this one read: put back below
        reading = asyncio.create_task(keys.get(MEDIA, 0))
        await asyncio.wait_for(arrived.wait(), TIMEOUT_S)  # the read has its row (the live key) and is held
        monkeypatch.setattr(keys, "_db_for", plain_db)
        discarded = REGISTRY.get_sample_value("trenchcoat_f4_keys_discarded_total") or 0.0
        assert await keys.discard(MEDIA, 0) == 1
        gate.set()
        with pytest.raises(NotFound, match="was deleted"):
            await reading  # it saw the discard happen and read again
        with pytest.raises(NotFound):
            await keys.get(MEDIA, 0)
        assert await keys.discard(MEDIA, 0) == 0  # already gone: not counted again
        assert REGISTRY.get_sample_value("trenchcoat_f4_keys_discarded_total") == discarded + 1
    finally:
        await keys.close()
