"""The one place a store calls another store: pulling a volume's bytes for a repair
(through the chassis's ``StoreClient``). The repair itself (``VolumeSet.restore``) sees
plain ``ExportChunk`` values."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from store.errors import SourceCannotExport
from trenchcoat.errors import InvalidArgument, NotFound, Unimplemented
from trenchcoat.store_client import StoreClient
from trenchcoat.store_types import ExportChunk


class Peers:
    """Other stores, as a repair's source."""

    def __init__(self, stores: StoreClient) -> None:
        self._stores = stores

    async def export(self, address: str, volume_id: int, chunk_bytes: int) -> AsyncGenerator[ExportChunk, None]:
        """The volume's export stream from the store at ``address``."""
        try:
            async with contextlib.aclosing(self._stores.export(address, volume_id, chunk_bytes=chunk_bytes)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except (NotFound, InvalidArgument, Unimplemented) as exc:
            # The source's answer is about the request, not this store: the repair cannot
            # proceed from there (FAILED_PRECONDITION), whatever the source said.
            raise SourceCannotExport(f"source store {address} cannot export volume {volume_id}: {exc}") from None
