"""trenchcoat/etcd.py's LeasedKey loop against a stand-in for etcd (the loop's logic, not
etcd's: tests/integration covers the real server): a shutdown never leaves a claim that
was under way holding the key, and a key refused for good ends the loop saying why."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trenchcoat.errors import AlreadyExists, Unavailable
from trenchcoat.etcd import LeasedKey, Record

HANG_S = 30.0


class StandIn:
    """What LeasedKey asks of Etcd; ``create`` can be held mid-way."""

    def __init__(self) -> None:
        self.leases = iter(range(100, 200))
        self.revoked: list[int] = []
        self.keys: dict[str, tuple[dict[str, Any], int]] = {}
        self.hold = asyncio.Event()
        self.hold.set()
        self.creating = asyncio.Event()

    async def grant(self, ttl_s: int) -> int:
        return next(self.leases)

    async def create(self, key: str, value: dict[str, Any], lease: int = 0) -> bool:
        self.creating.set()
        await self.hold.wait()
        if key in self.keys:
            return False
        self.keys[key] = (value, lease)
        return True

    async def get(self, key: str) -> Record | None:
        value, lease = self.keys[key]
        return Record(key, value, 1, lease)

    async def refresh(self, lease: int) -> bool:
        return lease not in self.revoked

    async def put(self, key: str, value: dict[str, Any], lease: int = 0) -> None:
        self.keys[key] = (value, lease)

    async def revoke(self, lease: int) -> None:
        self.revoked.append(lease)
        for key, (_, held) in list(self.keys.items()):
            if held == lease:
                del self.keys[key]


async def test_a_shutdown_during_a_claim_waits_for_it_and_then_revokes_its_lease() -> None:
    etcd = StandIn()
    etcd.hold.clear()  # the claim's create is held mid-way
    key = LeasedKey(etcd, "stores/1", 6, lambda: {"address": "s1"})  # type: ignore[arg-type]
    task = asyncio.create_task(key.run())
    async with asyncio.timeout(HANG_S):
        await etcd.creating.wait()
        stopping = asyncio.create_task(key.shutdown())
        await asyncio.sleep(0)  # the shutdown has begun, the claim is still under way
        assert not stopping.done()
        etcd.hold.set()  # the claim lands (the key written under lease 100)...
        await stopping
        await task
    assert etcd.revoked == [100] and "stores/1" not in etcd.keys  # ...and is revoked: the key is gone
    assert key.lease == 0 and not key.held.is_set()


async def test_a_key_refused_for_good_ends_the_loop_with_the_reason() -> None:
    class Taken(AlreadyExists):
        """Raised by take_over: held by someone this owner must not replace."""

    def refuse(record: Record) -> bool:
        raise Taken(f"{record.key} is another disk's")

    etcd = StandIn()
    etcd.keys["stores/2"] = ({"address": "elsewhere"}, 7)
    key = LeasedKey(etcd, "stores/2", 6, lambda: {"address": "s2"}, refuse)  # type: ignore[arg-type]
    with pytest.raises(Taken, match="another disk's"):
        async with asyncio.timeout(HANG_S):
            await key.run()
    assert etcd.revoked == [100]  # the lease of the refused claim is not kept


async def test_etcd_away_is_retried_not_fatal() -> None:
    etcd = StandIn()
    calls = 0
    real_grant = etcd.grant

    async def flaky_grant(ttl_s: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("etcd did not answer")
        return await real_grant(ttl_s)

    etcd.grant = flaky_grant  # type: ignore[method-assign]
    key = LeasedKey(etcd, "leader", 3, lambda: {"name": "d1"})  # type: ignore[arg-type]
    key.retry = type(key.retry)(base_s=0.001, max_s=0.001)  # (the test's own cadence)
    task = asyncio.create_task(key.run())
    async with asyncio.timeout(HANG_S):
        await key.held.wait()
    await key.shutdown()
    await task
    assert calls == 3 and etcd.revoked == [100]
