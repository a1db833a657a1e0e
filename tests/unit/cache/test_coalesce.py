"""cache/coalesce.py: the misses of one loop turn go to a store as one BatchRead."""

from __future__ import annotations

import asyncio

import pytest

from cache.coalesce import CoalescingReader
from trenchcoat.errors import NeedleNotFound, TrenchcoatError, Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob


def ref(key: int) -> NeedleRef:
    return NeedleRef(logical_volume=1, key=key, cookie=7)


class Stores:
    """Needles with key < 100 exist; ``down`` addresses fail every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[int]]] = []
        self.down: set[str] = set()

    def _one(self, needle: NeedleRef) -> Blob | TrenchcoatError:
        return Blob(b"k%d" % needle.key, "image/jpeg") if needle.key < 100 else NeedleNotFound("no such needle")

    async def read(self, address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> Blob:
        self.calls.append(("read", address, [needle.key]))
        await asyncio.sleep(0)
        if address in self.down:
            raise Unavailable(f"{address} is down")
        result = self._one(needle)
        if isinstance(result, TrenchcoatError):
            raise result
        return result

    async def batch_read(self, address: str, needles: list[NeedleRef], *,
                         timeout_s: float | None = None) -> list[Blob | TrenchcoatError]:
        self.calls.append(("batch", address, [n.key for n in needles]))
        await asyncio.sleep(0)
        if address in self.down:
            raise Unavailable(f"{address} is down")
        return [self._one(n) for n in needles]


async def test_reads_of_one_turn_go_as_one_batch_per_store_each_with_its_outcome():
    stores = Stores()
    reader = CoalescingReader(stores)
    got = await asyncio.gather(reader.read("s1", ref(1)), reader.read("s1", ref(2)), reader.read("s2", ref(3)),
                               reader.read("s1", ref(500)), return_exceptions=True)
    assert got[:3] == [Blob(b"k1", "image/jpeg"), Blob(b"k2", "image/jpeg"), Blob(b"k3", "image/jpeg")]
    assert isinstance(got[3], NeedleNotFound)
    assert sorted(stores.calls) == [("batch", "s1", [1, 2, 500]), ("read", "s2", [3])]


async def test_a_read_alone_is_a_plain_read_and_a_failed_call_fails_each_read_in_it():
    stores = Stores()
    reader = CoalescingReader(stores)
    assert await reader.read("s1", ref(4)) == Blob(b"k4", "image/jpeg")
    assert stores.calls == [("read", "s1", [4])]
    stores.down.add("s1")
    got = await asyncio.gather(reader.read("s1", ref(5)), reader.read("s1", ref(6)), return_exceptions=True)
    assert all(isinstance(g, Unavailable) for g in got)


async def test_a_reader_that_gives_up_leaves_the_others_their_answers():
    stores = Stores()
    reader = CoalescingReader(stores)
    quitter = asyncio.ensure_future(reader.read("s1", ref(7)))
    stayer = asyncio.ensure_future(reader.read("s1", ref(8)))
    await asyncio.sleep(0)
    quitter.cancel()
    assert await stayer == Blob(b"k8", "image/jpeg")
    with pytest.raises(asyncio.CancelledError):
        await quitter
