"""How the cache reads a miss from one replica: over the store's HTTP needle reads
(``store/http.py``) when the Directory's map gives the store an HTTP address, else over
gRPC ``ReadNeedle``. Both raise the same typed errors, so failover does not care which.

Why HTTP: on a run of misses (bench.read), the gRPC read was most of the miss's CPU on
both sides (py-spy of the cache: the gRPC client call and its poller thread over half of
it; the store spent about 250 us per ReadNeedle); over HTTP the store spends about 50 us
and the cache two thirds of what it did, and misses per second doubled (bench/README.md).
An earlier step batched the reads of one loop turn into one BatchRead per store; the HTTP
read costs less than that did, and it is gone.
"""

from __future__ import annotations

from trenchcoat.clients.directory import ReplicaView
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.store_http import StoreHttpClient
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob


class ReplicaReader:
    """A ``cache.photos.Reader``."""

    def __init__(self, http: StoreHttpClient, grpc: StoreClient) -> None:
        self._http = http
        self._grpc = grpc

    async def read(self, replica: ReplicaView, needle: NeedleRef) -> Blob:
        if replica.http_address:
            return await self._http.read(replica.http_address, needle)
        return await self._grpc.read(replica.address, needle)


class F4Reader:
    """A ``cache.photos.WarmReader``: blobs of warm volumes from the cell's f4 front."""

    def __init__(self, f4: F4Client) -> None:
        self._f4 = f4

    async def read(self, needle: NeedleRef) -> Blob:
        blob = await self._f4.read_blob(needle)
        return Blob(blob.data, blob.content_type)
