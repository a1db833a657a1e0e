"""Store reads that arrive together leave together: one BatchRead per store per loop turn.

Under load most of a cache miss's CPU is the gRPC call to the store, on both sides
(py-spy of the cache during a run of first reads: the client call and gRPC's poller
thread were over half of it), while a BatchRead of many needles costs the store about
what one read does (bench.store: batch_vs_single 19-26). So the misses of one event-loop
turn that go to the same store are sent as one BatchRead when the turn ends; a miss
alone goes as a plain ReadNeedle, so a quiet cache pays nothing for this. Each needle
keeps its own outcome (BatchRead reports errors per needle, as their typed errors); a
failed call fails every read in it, and each then fails over on its own as before.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import Histogram

from trenchcoat.errors import TrenchcoatError
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob

BATCH_SIZES = Histogram("trenchcoat_cache_store_read_batch_size", "Needles per read sent to a store.",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
MAX_BATCH = 128
"""Largest batch sent at once (BatchRead takes up to 1,000)."""


class Stores(Protocol):
    """``trenchcoat.store_client.StoreClient``'s reads."""

    async def read(self, address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> Blob: ...

    async def batch_read(self, address: str, needles: list[NeedleRef], *,
                         timeout_s: float | None = None) -> list[Blob | TrenchcoatError]: ...


class CoalescingReader:
    """A ``cache.photos.Reader`` that batches the reads of one loop turn per store."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._queued: dict[str, list[tuple[NeedleRef, asyncio.Future[Blob]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def read(self, address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> Blob:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Blob] = loop.create_future()
        queue = self._queued.get(address)
        if queue is None:
            queue = self._queued[address] = []
            loop.call_soon(self._flush, address)
        queue.append((needle, done))
        if len(queue) >= MAX_BATCH:
            self._flush(address)
        return await done

    def _flush(self, address: str) -> None:
        batch = self._queued.pop(address, None)
        if batch:
            task = asyncio.ensure_future(self._send(address, batch))
            self._sending.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._sending.discard)

    async def _send(self, address: str, batch: list[tuple[NeedleRef, asyncio.Future[Blob]]]) -> None:
        BATCH_SIZES.observe(len(batch))
        try:
            if len(batch) == 1:
                results: list[Blob | TrenchcoatError] = [await self._stores.read(address, batch[0][0])]
            else:
                results = await self._stores.batch_read(address, [needle for needle, _ in batch])
        except TrenchcoatError as exc:
            results = [exc] * len(batch)
        except BaseException as exc:  # a bug or a cancellation: no reader may wait forever
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            raise
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue  # that reader gave up
            if isinstance(result, TrenchcoatError):
                done.set_exception(result)
            else:
                done.set_result(result)
