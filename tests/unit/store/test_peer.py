"""store/peer.py: a repair's source that stops sending fails the copy within the chunk
deadline, naming the source, however long the whole copy may take. The source is the
chassis's StoreClient over a stand-in for the stub's export call, so the deadline tested is
the one the client keeps."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from store.errors import SourceStalled
from store.peer import Peers
from trenchcoat.clients.store import StoreClient
from trenchcoat.rpc import ChannelPool
from trenchcoat.store_types import ExportChunk
from trenchcoat.v1 import store_pb2


class StallingCall:
    """A source store's ExportVolume call: ``chunks`` chunks, each after ``pause_s``, then
    nothing more (frozen) unless ``ends``."""

    def __init__(self, chunks: int, pause_s: float, ends: bool) -> None:
        self.chunks, self.pause_s, self.ends = chunks, pause_s, ends
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self):
        for i in range(self.chunks):
            await asyncio.sleep(self.pause_s)
            yield store_pb2.ExportVolumeResponse(offset=i * 4, data=b"abcd", end_offset=4 * self.chunks)
        if not self.ends:
            await asyncio.Event().wait()


class Source:
    """The channel pool's stub of the source store, answering ExportVolume with a StallingCall."""

    def __init__(self, chunks: int, pause_s: float = 0.0, ends: bool = False) -> None:
        self.call = StallingCall(chunks, pause_s, ends)

    def stub(self, _cls, _address):
        return self

    def ExportVolume(self, request, timeout):
        assert timeout is None  # the copy as a whole has no deadline
        return self.call


def peers(source: Source, chunk_timeout_s: float) -> Peers:
    """Peers copying through the chassis's StoreClient, whose pool is ``source``."""
    return Peers(StoreClient(cast(ChannelPool, source), timeout_s=30.0), chunk_timeout_s=chunk_timeout_s)


async def test_a_source_that_stops_sending_fails_the_copy_within_the_chunk_deadline():
    source = Source(3)
    copying = peers(source, chunk_timeout_s=0.2)
    got: list[ExportChunk] = []
    started = time.monotonic()
    with pytest.raises(SourceStalled) as info:
        async for chunk in copying.export("s9:7200", 4, 4):
            got.append(chunk)
    assert len(got) == 3  # what came before the stall was handed on
    assert time.monotonic() - started < 5
    assert info.value.status == "UNAVAILABLE" and "s9:7200" in str(info.value) and "volume 4" in str(info.value)
    assert source.call.cancelled  # the stalled stream is not left open


async def test_a_slow_copy_is_not_cut_while_every_chunk_arrives_in_time():
    # the copy takes longer than one deadline
    copying = peers(Source(8, pause_s=0.05, ends=True), chunk_timeout_s=0.3)
    assert len([c async for c in copying.export("s9:7200", 4, 4)]) == 8
