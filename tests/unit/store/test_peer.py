"""store/peer.py: a repair's source that stops sending fails the copy within the chunk
deadline, naming the source, however long the whole copy may take."""

from __future__ import annotations

import asyncio
import time

import pytest

from store.errors import SourceStalled
from store.peer import Peers
from trenchcoat.store_types import ExportChunk


class StallingSource:
    """A source store that sends ``chunks`` chunks, then nothing more (frozen)."""

    def __init__(self, chunks: int, pause_s: float = 0.0) -> None:
        self.chunks = chunks
        self.pause_s = pause_s

    async def export(self, address, volume_id, *, chunk_bytes=0, offset=0, timeout_s=None):
        for i in range(self.chunks):
            await asyncio.sleep(self.pause_s)
            yield ExportChunk(i * 4, b"abcd", 0, 4 * self.chunks + 4)
        await asyncio.Event().wait()


async def test_a_source_that_stops_sending_fails_the_copy_within_the_chunk_deadline():
    peers = Peers(StallingSource(3), chunk_timeout_s=0.2)
    got = []
    started = time.monotonic()
    with pytest.raises(SourceStalled) as info:
        async for chunk in peers.export("s9:7200", 4, 4):
            got.append(chunk)
    assert len(got) == 3  # what came before the stall was handed on
    assert time.monotonic() - started < 5
    assert info.value.status == "UNAVAILABLE" and "s9:7200" in str(info.value) and "volume 4" in str(info.value)


async def test_a_slow_copy_is_not_cut_while_every_chunk_arrives_in_time():
    class Slow(StallingSource):
        async def export(self, address, volume_id, *, chunk_bytes=0, offset=0, timeout_s=None):
            for i in range(self.chunks):
                await asyncio.sleep(self.pause_s)
                yield ExportChunk(i * 4, b"abcd", 0, 4 * self.chunks)

    peers = Peers(Slow(8, pause_s=0.05), chunk_timeout_s=0.3)  # the copy takes longer than one deadline
    assert len([c async for c in peers.export("s9:7200", 4, 4)]) == 8
