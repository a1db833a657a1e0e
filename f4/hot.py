"""The live needles of a sealed hot volume, read from a replica's export stream.

A volume file is a superblock and needles appended one after another; a needle written
again under the same (key, alternate key) supersedes the earlier one, and a delete flags
the needle in place. So the stream is read twice: the first pass finds the last copy of
each (key, alternate key) and whether it is deleted, keeping only offsets; the second
yields the live ones' bytes as it meets them. Memory stays that of the index, whatever the
volume's size. Every chunk's CRC32C (the sender's) is checked, and every needle's own
checksum: a replica with damaged bytes fails the export (DATA_LOSS) and the caller reads
another replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from f4.cell import PlainBlob
from trenchcoat import needle
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import ChecksumMismatch

_Needles = AsyncIterator[tuple[int, needle.Needle, bytes]]


async def _needles(stores: StoreClient, address: str, volume_id: int, *, chunk_timeout_s: float,
                   with_data: bool) -> _Needles:
    """(offset, fields, data) of every intact needle in the volume file, in file order
    (data empty unless ``with_data``)."""
    buf = bytearray()
    base = 0  # file offset of buf[0]
    superblock = False
    async with contextlib.aclosing(stores.export(address, volume_id, chunk_timeout_s=chunk_timeout_s)) as chunks:
        async for chunk in chunks:
            if needle.crc32c(chunk.data) != chunk.crc32c:
                raise ChecksumMismatch(f"store {address}: an export chunk of volume {volume_id} at {chunk.offset} "
                                       "arrived damaged")
            buf += chunk.data
            at = 0
            if not superblock:
                if len(buf) < needle.SUPERBLOCK.size:
                    continue
                at = needle.SUPERBLOCK.size
                superblock = True
            while True:
                if len(buf) - at < needle.HEADER.size:
                    break
                try:
                    fields, size = needle.unpack_header(buf, at)
                except needle.NeedleFormatError as exc:
                    raise ChecksumMismatch(f"store {address}: volume {volume_id} is damaged at {base + at} ({exc})") \
                        from None
                total = needle.stored_size(size)
                if len(buf) - at < total:
                    break
                try:
                    _, data = needle.unpack(buf, at)
                except needle.NeedleFormatError as exc:
                    raise ChecksumMismatch(f"store {address}: needle {fields.key:#x}/{fields.alternate_key} of "
                                           f"volume {volume_id} at {base + at} fails verification ({exc})") from None
                payload = bytes(data) if with_data else b""
                data.release()  # the buffer is cut below: no view of it may outlive this
                yield base + at, fields, payload
                at += total
            del buf[:at]
            base += at
    if buf:
        raise ChecksumMismatch(f"store {address}: volume {volume_id} ends in {len(buf)} bytes of a torn needle")


async def live_needles(stores: StoreClient, address: str, volume_id: int, *,
                       chunk_timeout_s: float = 30.0) -> AsyncIterator[PlainBlob]:
    """The volume's live needles (the last copy of each, not deleted), as the replica at
    ``address`` holds them."""
    last: dict[tuple[int, int], tuple[int, bool]] = {}
    async for offset, fields, _ in _needles(stores, address, volume_id, chunk_timeout_s=chunk_timeout_s,
                                            with_data=False):
        last[fields.key, fields.alternate_key] = (offset, bool(fields.flags & needle.FLAG_DELETED))
    live = {key: offset for key, (offset, deleted) in last.items() if not deleted}
    async for offset, fields, data in _needles(stores, address, volume_id, chunk_timeout_s=chunk_timeout_s,
                                               with_data=True):
        if live.get((fields.key, fields.alternate_key)) == offset:
            yield PlainBlob(fields.key, fields.alternate_key, fields.cookie, fields.media_type, data)
