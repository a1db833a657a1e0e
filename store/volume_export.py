"""Exporting a volume: its file's bytes as they are, in chunks, from an offset to its end at
the start of the export (the ``ExportVolume`` RPC). A repair copies a volume from a
replica this way (``VolumeSet.restore``), and f4 takes a sealed volume's needles from it;
the needle layout in the stream is the contract's (``trenchcoat/needle.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from store.errors import BadNeedleRequest
from store.volume_base import VolumeBase

EXPORT_CHUNK = 1024 * 1024
"""Bytes a chunk carries when the request names no size."""


class VolumeExport(VolumeBase):
    """The export of ``Volume``."""

    async def export(self, offset: int, chunk: int) -> AsyncIterator[tuple[int, bytes, int]]:
        """Yields (offset, bytes, end) of the volume file from ``offset`` to its end now."""
        end = self._end
        if offset > end:
            raise BadNeedleRequest(f"export offset {offset} is past the end of volume {self.volume_id} ({end})")
        chunk = chunk or EXPORT_CHUNK
        handle = self._handle
        fd = handle.acquire()
        try:
            while offset < end:
                data = await self._in_thread(os.pread, fd, min(chunk, end - offset), offset)
                if not data:
                    break
                yield offset, data, end
                offset += len(data)
        finally:
            handle.release()
