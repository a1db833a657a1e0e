"""The one place a store calls another store: pulling a volume's bytes for a repair, or one
needle's (through the chassis's ``StoreClient``). The repair itself (``VolumeSet.restore``)
sees plain ``ExportChunk`` values.

The copy as a whole takes as long as the volume needs, so it has no deadline; each chunk
has one (``store.peer_timeout_s``): a source that stops sending (stalled, partitioned)
fails the repair with ``SourceStalled`` (UNAVAILABLE) naming it, and the Directory retries the repair."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence

from store.errors import SourceCannotExport, SourceStalled
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import DeadlineExceeded, InvalidArgument, NotFound, Unimplemented
from trenchcoat.store_types import ExportChunk, NeedleSummary


class Peers:
    """Other stores, as a repair's source."""

    def __init__(self, stores: StoreClient, *, chunk_timeout_s: float) -> None:
        self._stores = stores
        self._chunk_timeout = chunk_timeout_s

    async def export(self, address: str, volume_id: int, chunk_bytes: int) -> AsyncGenerator[ExportChunk, None]:
        """The volume's export stream from the store at ``address``, each chunk within the deadline."""
        try:
            async with contextlib.aclosing(self._stores.export(address, volume_id, chunk_bytes=chunk_bytes,
                                                               chunk_timeout_s=self._chunk_timeout)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except DeadlineExceeded:
            raise SourceStalled(f"source store {address} sent nothing of volume {volume_id} for "
                                f"{self._chunk_timeout:g}s; the repair is to be retried") from None
        except (NotFound, InvalidArgument, Unimplemented) as exc:
            # The source's answer is about the request, not this store: the repair cannot
            # proceed from there (FAILED_PRECONDITION), whatever the source said.
            raise SourceCannotExport(f"source store {address} cannot export volume {volume_id}: {exc}") from None

    async def copy_needle(self, address: str, volume_id: int, key: int, alternate_key: int) -> bytes:
        """A needle's verified stored bytes from the store at ``address``: its DATA_LOSS
        (damaged there too) and NOT_FOUND pass through as they are."""
        try:
            return await self._stores.copy_needle(address, volume_id, key, alternate_key)
        except DeadlineExceeded:
            raise SourceStalled(f"source store {address} did not send needle {key:#x}/{alternate_key} of volume "
                                f"{volume_id} in time; the repair is to be retried") from None

    async def volume_digest(self, address: str, volume_id: int) -> tuple[bytes, bool]:
        return await self._stores.volume_digest(address, volume_id)

    async def list_needles(self, address: str, volume_id: int,
                           buckets: Sequence[int]) -> tuple[list[NeedleSummary], int]:
        return await self._stores.list_needles(address, volume_id, buckets)

    async def copy_needles(self, address: str, volume_id: int,
                           needles: Sequence[tuple[int, int]]) -> AsyncGenerator[list[bytes], None]:
        async with contextlib.aclosing(self._stores.copy_needles(address, volume_id, needles)) as batches:
            async for batch in batches:
                yield batch
