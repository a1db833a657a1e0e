"""Blocks on a storage node's disks, each byte range checked against per-chunk CRC32C.

A node serves one block directory per failure domain it stands for (one in production,
several on a test machine so a whole cell fits on two cores). A block is two files in
its domain's directory::

    <dir>/v<volume>/s<stripe>/b<index>.blk   the block's bytes
    <dir>/v<volume>/s<stripe>/b<index>.crc   CRC32C of each CRC_CHUNK of them (uint32, little-endian)

A put writes both under temporary names, checks the whole block's CRC32C against the one
the sender computed (bytes damaged on the way are DATA_LOSS and nothing is kept),
fdatasyncs them, renames the checksums then the block into place and syncs the
directory: a block file exists only complete and durable. A put of a block the node
holds replaces it (a rebuild onto the same node); a crash between the two renames leaves
the old bytes under the new checksums, which reads report as DATA_LOSS (never as bytes)
until the block is put again.

A range read reads the whole chunks covering the range in one pread and checks each; a
mismatch is DATA_LOSS (``ChecksumMismatch``), never the bytes, and the block is marked
damaged (``ListBlocks`` reports it unhealthy until it is put again). A scrub
(``Scrubber``) walks every block the same way in the background, throttled, so damage in
bytes nobody reads is found too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import crc32c
import numpy as np

from f4.storage import metrics
from f4.storage.errors import BlockNotFound
from trenchcoat.errors import ChecksumMismatch, InvalidArgument, OutOfRange
from trenchcoat.f4_types import BlockId
from trenchcoat.workers import PeriodicWorker, keep_pace

log = logging.getLogger(__name__)

CRC_CHUNK = 16 * 1024
"""Bytes covered by one checksum: a range read reads at most two chunks more than it returns."""

_BLOCK = re.compile(r"b(\d+)\.blk")

SCRUB_CHUNKS = 64
"""CRC chunks a scrub reads at once (1 MiB)."""




@dataclass(slots=True)
class Held:
    """A block this node holds."""

    id: BlockId
    domain: str
    path: Path
    size: int
    crcs: np.ndarray | None = None
    """The chunk checksums, loaded on first read."""
    damaged: bool = False


class BlockStore:
    def __init__(self, directories: Mapping[str, Path], io_threads: int = 8) -> None:
        """``directories``: failure domain -> the directory of its blocks."""
        if not directories:
            raise InvalidArgument("a storage node needs at least one block directory")
        self._dirs = {domain: Path(d) for domain, d in directories.items()}
        self._held: dict[BlockId, Held] = {}
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="f4-io")

    @property
    def domains(self) -> list[str]:
        return list(self._dirs)

    def load(self) -> None:
        """Finds the blocks on disk (leftover temporary files of an interrupted put are removed)."""
        for domain, root in self._dirs.items():
            root.mkdir(parents=True, exist_ok=True)
            for path in root.glob("v*/s*/*"):
                if path.name.endswith(".tmp"):
                    path.unlink()
                    continue
                match = _BLOCK.fullmatch(path.name)
                if match is None:
                    continue
                block = BlockId(int(path.parent.parent.name[1:]), int(path.parent.name[1:]), int(match[1]))
                self._held[block] = Held(block, domain, path, path.stat().st_size)

    def blocks(self) -> list[Held]:
        return sorted(self._held.values(), key=lambda h: h.id)

    def _held_block(self, block: BlockId) -> Held:
        held = self._held.get(block)
        if held is None:
            raise BlockNotFound(f"this node holds no {block}")
        return held

    async def put(self, block: BlockId, domain: str, chunks: AsyncIterator[bytes], crc: Callable[[], int]) -> int:
        """Stores the block from ``chunks`` in ``domain``'s directory; durable on return.
        Returns its size. ``crc()``, once ``chunks`` is exhausted: the CRC32C of the whole
        block as the sender computed it (a stream carries it at its end)."""
        root = self._dirs.get(domain)
        if root is None:
            raise InvalidArgument(f"this node serves failure domains {sorted(self._dirs)}, not {domain!r}")
        directory = root / f"v{block.volume}" / f"s{block.stripe}"
        path = directory / f"b{block.index}.blk"
        sums_path = path.with_suffix(".crc")
        unique = uuid.uuid4().hex[:12]  # two puts of one block at once never write the same file
        tmp = path.with_name(f"{path.name}.{unique}.tmp")
        sums_tmp = sums_path.with_name(f"{sums_path.name}.{unique}.tmp")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, lambda: directory.mkdir(parents=True, exist_ok=True))
        fd = await loop.run_in_executor(self._io, os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            size, whole, sums, pending = 0, 0, [], b""
            async for data in chunks:
                whole = crc32c.crc32c(data, whole)
                pending += data
                cut = len(pending) - len(pending) % CRC_CHUNK
                if cut:
                    sums.extend(_chunk_sums(pending[:cut]))
                    await loop.run_in_executor(self._io, _write_all, fd, pending[:cut])
                    pending = pending[cut:]
                size += len(data)
            if pending:
                sums.extend(_chunk_sums(pending))
                await loop.run_in_executor(self._io, _write_all, fd, pending)
            if whole != crc():
                raise ChecksumMismatch(f"{block} arrived damaged (crc32c {whole:08x}, the sender's {crc():08x}); "
                                       "nothing was kept")
            await loop.run_in_executor(self._io, os.fdatasync, fd)
        except BaseException:
            os.close(fd)
            await loop.run_in_executor(self._io, _remove, tmp)
            raise
        os.close(fd)
        table = np.asarray(sums, dtype="<u4")
        await loop.run_in_executor(self._io, _write_durably, sums_tmp, table.tobytes())
        await loop.run_in_executor(self._io, _commit, sums_tmp, sums_path, tmp, path, directory)
        self._held[block] = Held(block, domain, path, size, table)
        self._count_damaged()  # a put over a damaged block heals it
        return size

    async def read(self, block: BlockId, offset: int, length: int, *, reason: str = "read") -> bytes:
        """Bytes ``[offset, offset + length)`` of the block, each covering chunk verified."""
        held = self._held_block(block)
        if offset < 0 or length < 0 or offset + length > held.size:
            raise OutOfRange(f"bytes [{offset}, {offset + length}) are past the end of {block} ({held.size} bytes)")
        if length == 0:
            return b""
        first, last = offset // CRC_CHUNK, (offset + length - 1) // CRC_CHUNK
        start = first * CRC_CHUNK
        end = min(held.size, (last + 1) * CRC_CHUNK)
        loop = asyncio.get_running_loop()
        try:
            if held.crcs is None:
                raw = await loop.run_in_executor(self._io, held.path.with_suffix(".crc").read_bytes)
                held.crcs = np.frombuffer(raw, dtype="<u4")
            data = await loop.run_in_executor(self._io, _pread, held.path, end - start, start)
        except FileNotFoundError:
            self._damaged(held)
            raise ChecksumMismatch(f"{block}: its file is gone from {held.path.parent}") from None
        metrics.BYTES_READ.labels(reason).inc(len(data))
        expected = held.crcs[first:last + 1]
        if len(data) != end - start or len(expected) != last - first + 1:
            self._damaged(held)
            raise ChecksumMismatch(f"{block} is shorter on disk than recorded: it is damaged")
        for i, want in enumerate(expected):
            if crc32c.crc32c(data[i * CRC_CHUNK:(i + 1) * CRC_CHUNK]) != int(want):
                self._damaged(held)
                raise ChecksumMismatch(f"{block}: bytes {start + i * CRC_CHUNK} to "
                                       f"{min(held.size, start + (i + 1) * CRC_CHUNK)} failed their checksum")
        return data[offset - start:offset - start + length]

    async def delete(self, block: BlockId) -> bool:
        """Removes the block's files (checksums last, so a block file never lacks them);
        False when this node holds no such block."""
        held = self._held.pop(block, None)
        if held is None:
            return False
        await asyncio.get_running_loop().run_in_executor(self._io, _delete_block, held.path)
        self._count_damaged()
        return True

    def _damaged(self, held: Held) -> None:
        metrics.CHECKSUM_FAILURES.inc()
        held.damaged = True
        self._count_damaged()

    def _count_damaged(self) -> None:
        metrics.DAMAGED.set(sum(h.damaged for h in self._held.values()))

    async def scrub(self, block: BlockId, bytes_per_s: float) -> bool:
        """Reads the whole block, chunk by chunk, checking every CRC, at most
        ``bytes_per_s``; True when it is intact. A damaged one is marked (ListBlocks
        reports it unhealthy) and counted like a failed read."""
        held = self._held_block(block)
        loop = asyncio.get_running_loop()
        step = SCRUB_CHUNKS * CRC_CHUNK
        for start in range(0, max(held.size, 1), step):
            if held.damaged or self._held.get(block) is not held:
                return not held.damaged  # damaged meanwhile, or replaced by a new put
            began = loop.time()
            try:
                await self.read(block, start, min(step, held.size - start), reason="scrub")
            except ChecksumMismatch:
                return False
            await keep_pace(began, min(step, held.size - start), bytes_per_s)
        return True

    def close(self) -> None:
        self._io.shutdown(wait=True)


def _chunk_sums(data: bytes) -> list[int]:
    return [crc32c.crc32c(data[i:i + CRC_CHUNK]) for i in range(0, len(data), CRC_CHUNK)]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _commit(sums_tmp: Path, sums: Path, tmp: Path, path: Path, directory: Path) -> None:
    """Checksums first, then the block: a block file in place always has its checksums."""
    os.replace(sums_tmp, sums)
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete_block(path: Path) -> None:
    _remove(path)
    _remove(path.with_suffix(".crc"))
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pread(path: Path, length: int, offset: int) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return os.pread(f.fileno(), length, offset)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class Scrubber(PeriodicWorker):
    """Every ``interval_s``, checks every block this node holds (``BlockStore.scrub``)
    at most ``bytes_per_s``."""

    def __init__(self, blocks: BlockStore, interval_s: float, bytes_per_s: float) -> None:
        super().__init__("f4 scrub", interval_s)
        self._blocks = blocks
        self._rate = bytes_per_s

    async def tick(self) -> None:
        for held in self._blocks.blocks():
            if held.damaged:
                continue
            if not await self._blocks.scrub(held.id, self._rate):
                log.error("scrub: %s in domain %s is damaged; it needs a rebuild", held.id, held.domain)
