"""Online reconstruction of one byte range of a lost block: what a backoff node does for a
warm read, and what a rebuilder does step by step for a whole block.

Byte ``p`` of a row sits at offset ``p`` in every block of the stripe (``f4.layout``), and
the code works on each byte position alone (``f4.codec``), so the range ``[offset,
offset + length)`` of a lost block is rebuilt from the same range of any 10 other blocks:
about 10x the bytes wanted are read, never whole blocks. The other 13 blocks are asked
10 at a time; one that fails is replaced by the next. Fewer than 10 answering is
``StripeUnavailable`` naming the stripe
(``trenchcoat.errors``: it crosses the wire as itself), never wrong bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from f4 import codec, metrics
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.errors import InvalidArgument, StripeUnavailable, TrenchcoatError
from trenchcoat.f4_types import BlockId


@dataclass(frozen=True, slots=True)
class Rebuilt:
    data: bytes
    bytes_read: int
    """Bytes read from the surviving blocks to rebuild ``data``."""


async def reconstruct(storage: F4StorageClient, block: BlockId, sources: Sequence[str], offset: int,
                      length: int) -> Rebuilt:
    """Bytes ``[offset, offset + length)`` of ``block`` rebuilt from the same range of 10
    other blocks of its stripe; ``sources[i]`` is the node holding block ``i``."""
    if len(sources) != codec.N:
        raise InvalidArgument(f"a stripe has {codec.N} blocks; {len(sources)} sources were given")
    if not 0 <= block.index < codec.N:
        raise InvalidArgument(f"block indexes are 0-{codec.N - 1}, got {block.index}")
    if length <= 0 or offset < 0:
        raise InvalidArgument(f"bytes [{offset}, {offset + length}) are not a range to rebuild")
    candidates = [i for i in range(codec.N) if i != block.index]
    ranges: dict[int, bytes] = {}
    failures: list[str] = []

    async def fetch(index: int) -> None:
        try:
            ranges[index] = await storage.read_range(sources[index], BlockId(block.volume, block.stripe, index),
                                                     offset, length)
        except TrenchcoatError as exc:
            failures.append(f"block {index} on {sources[index]}: {exc}")

    while len(ranges) < codec.K and candidates:
        batch, candidates = candidates[:codec.K - len(ranges)], candidates[codec.K - len(ranges):]
        await asyncio.gather(*(fetch(i) for i in batch))
    read = length * len(ranges)
    metrics.RECONSTRUCT_BYTES.inc(read)
    if len(ranges) < codec.K:
        metrics.RECONSTRUCTIONS.labels("unavailable").inc()
        raise StripeUnavailable(
            f"stripe {block.stripe} of warm volume {block.volume}: block {block.index} failed and only "
            f"{len(ranges)} of the other {codec.N - 1} blocks answered ({'; '.join(failures)}); "
            f"{codec.K} are needed to rebuild it; retry when the nodes are back")
    data = codec.rebuild(ranges, [block.index])[block.index]
    metrics.RECONSTRUCTIONS.labels("rebuilt").inc()
    metrics.RECONSTRUCTED_BYTES.inc(length)
    metrics.READ_PER_RECONSTRUCTION.observe(read)
    return Rebuilt(data, read)
