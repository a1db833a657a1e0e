"""Whole-block rebuilds: a block that is damaged (a checksum failed, its file is gone) or
lost (its node does not answer) is rebuilt from 10 other blocks of its stripe, range by
range (``f4.reconstruct``), throttled to ``bytes_per_s`` of reads so live reads keep their
latency, then put durably (the node checks the whole block's CRC32C on arrival), read
back and compared, and only then recorded in the manifest when it moved to another node.

Where it goes is decided by ``target``: a block whose node answers is rebuilt in place
(same node, same failure domain); one whose node is silent goes to a failure domain the
stripe does not use yet, so no stripe ever holds two blocks in one domain.

**Resuming.** Each step's bytes are appended to a journal on the rebuilder's disk
(``Journal``: ``<dir>/v<volume>-s<stripe>-b<index>.part`` and its ``.json`` record with
the target and a CRC32C per step), synced before the step counts as done. A rebuilder
killed mid-block finds the record at start, checks the bytes it kept step by step
(a step that fails its CRC is rebuilt again) and carries on from there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import crc32c

from f4 import manifest as manifest_io
from f4 import metrics
from f4.errors import RebuildInterrupted
from f4.layout import place
from f4.manifest import Manifest, Stripe
from f4.reconstruct import reconstruct
from trenchcoat.clients.f4 import F4StorageClient
from trenchcoat.errors import DataLoss, InvalidArgument, TrenchcoatError
from trenchcoat.f4_types import BlockId
from trenchcoat.workers import keep_pace

log = logging.getLogger(__name__)


STEP = 1024 * 1024
"""Bytes of a block rebuilt per step by default (the throttle's and the journal's grain)."""




@dataclass
class Progress:
    """One rebuild: what, where to, how far."""

    rebuild_id: str
    block: BlockId
    total_bytes: int
    node: str
    """Storage node it is rebuilt onto."""
    domain: str
    reason: str
    """damaged, missing, lost or requested."""
    done_bytes: int = 0
    finished: bool = False
    error: str = ""
    resumed_bytes: int = 0
    """Bytes a restarted rebuilder took over from the journal."""
    step_bytes: int = STEP
    step_crcs: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.time)


def target(stripe: Stripe, index: int, domains: Mapping[str, Sequence[str]], *, node_answers: bool) -> tuple[str, str]:
    """(node, failure domain) to rebuild block ``index`` of ``stripe`` onto: in place when
    its node answers, else a domain no other block of the stripe uses (``domains``: domain
    -> the answering nodes serving it). FailedPrecondition when there is none."""
    node, domain = stripe.blocks[index]
    if node_answers:
        return node, domain
    taken = [d for i, (_, d) in enumerate(stripe.blocks) if i != index]
    [(domain, node)] = place({d: [a for a in nodes if a != node] for d, nodes in domains.items() if d != domain},
                             taken=taken)
    return node, domain


class Journal:
    """Rebuilds under way, kept on the rebuilder's disk so a restart carries on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _paths(self, block: BlockId) -> tuple[Path, Path]:
        stem = self.root / f"v{block.volume}-s{block.stripe}-b{block.index}"
        return stem.with_suffix(".json"), stem.with_suffix(".part")

    def pending(self) -> list[Progress]:
        """The rebuilds a previous run left unfinished, their kept bytes checked step by step
        (cut back to the last step that passes)."""
        out = []
        for record in sorted(self.root.glob("*.json")):
            try:
                doc = json.loads(record.read_text())
                doc["block"] = BlockId(*doc["block"])
                progress = Progress(**doc)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("rebuild journal %s does not parse (%s): starting that rebuild over", record, exc)
                record.unlink()
                record.with_suffix(".part").unlink(missing_ok=True)
                continue
            _, part = self._paths(progress.block)
            kept = part.read_bytes() if part.exists() else b""
            good = 0
            step = progress.step_bytes
            for i, want in enumerate(progress.step_crcs):
                chunk = kept[i * step:(i + 1) * step]
                if len(chunk) != min(step, progress.total_bytes - i * step) or crc32c.crc32c(chunk) != want:
                    break
                good = i + 1
            progress.step_crcs = progress.step_crcs[:good]
            progress.done_bytes = min(good * step, progress.total_bytes)
            progress.resumed_bytes = progress.done_bytes
            progress.finished = False
            progress.error = ""
            with open(part, "ab") as f:
                f.truncate(progress.done_bytes)
            out.append(progress)
        return out

    def _write_record(self, progress: Progress) -> None:
        record, _ = self._paths(progress.block)
        doc = asdict(progress)
        doc["block"] = [progress.block.volume, progress.block.stripe, progress.block.index]
        tmp = record.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(doc))
            f.flush()
            os.fdatasync(f.fileno())
        os.replace(tmp, record)

    def _start(self, progress: Progress) -> None:
        _, part = self._paths(progress.block)
        with open(part, "ab") as f:
            f.truncate(progress.done_bytes)
        self._write_record(progress)

    def _append(self, progress: Progress, data: bytes) -> None:
        _, part = self._paths(progress.block)
        with open(part, "ab") as f:
            f.write(data)
            f.flush()
            os.fdatasync(f.fileno())
        self._write_record(progress)

    def _finish(self, block: BlockId) -> None:
        for path in self._paths(block):
            path.unlink(missing_ok=True)

    def _read(self, block: BlockId) -> bytes:
        return self._paths(block)[1].read_bytes()

    async def start(self, progress: Progress) -> None:
        await asyncio.to_thread(self._start, progress)

    async def append(self, progress: Progress, data: bytes) -> None:
        """Keeps ``data`` (the step just rebuilt; ``progress`` counts it) durably."""
        await asyncio.to_thread(self._append, progress, data)

    async def read(self, block: BlockId) -> bytes:
        return await asyncio.to_thread(self._read, block)

    async def finish(self, block: BlockId) -> None:
        await asyncio.to_thread(self._finish, block)


class Rebuilder:
    """Rebuilds one block at a time, throttled, through a journal."""

    def __init__(self, storage: F4StorageClient, bytes_per_s: float, journal: Journal, *,
                 step_bytes: int = STEP, stopping: Callable[[], bool] = lambda: False) -> None:
        self._storage = storage
        self.step_bytes = step_bytes
        self.bytes_per_s = bytes_per_s
        metrics.THROTTLE.set(bytes_per_s)
        self.journal = journal
        self._stopping = stopping
        self.progress: list[Progress] = []
        """Recent rebuilds, newest first (finished, failed and the one under way)."""
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"r{next(self._ids)}-{int(time.time())}"

    def _record(self, progress: Progress) -> None:
        self.progress = [p for p in self.progress if p.rebuild_id != progress.rebuild_id]
        self.progress.insert(0, progress)
        del self.progress[100:]

    async def rebuild(self, manifest: Manifest, stripe_number: int, index: int, onto: tuple[str, str], *,
                      reason: str, rebuild_id: str = "", resume: Progress | None = None) -> Progress:
        """Rebuilds block ``index`` of the stripe onto ``onto`` (node, domain; see
        ``target``), carrying on from ``resume`` when given. Returns its record, finished;
        raises the typed error that stopped it (the record says it too)."""
        if not 0 <= stripe_number < len(manifest.stripes):
            raise InvalidArgument(f"volume {manifest.volume_id} has no stripe {stripe_number}")
        stripe = manifest.stripes[stripe_number]
        block = BlockId(manifest.volume_id, stripe_number, index)
        size = manifest.geometry.block_size(stripe.data_bytes)
        progress = resume
        if progress is None or (progress.node, progress.domain, progress.total_bytes) != (*onto, size):
            progress = Progress(rebuild_id or self.new_id(), block, size, *onto, reason, step_bytes=self.step_bytes)
        self._record(progress)
        node, domain = onto
        sources = [n for n, _ in stripe.blocks]
        loop = asyncio.get_running_loop()
        try:
            await self.journal.start(progress)
            while progress.done_bytes < size:
                if self._stopping():
                    raise RebuildInterrupted(f"{block}: rebuild stopped at {progress.done_bytes} of {size} bytes "
                                             "(shutting down); it carries on at the next start")
                began = loop.time()
                length = min(progress.step_bytes, size - progress.done_bytes)
                done = await reconstruct(self._storage, block, sources, progress.done_bytes, length)
                kept = replace(progress, done_bytes=progress.done_bytes + length,
                               step_crcs=[*progress.step_crcs, crc32c.crc32c(done.data)])
                await self.journal.append(kept, done.data)  # counted done only once durable
                progress.done_bytes, progress.step_crcs = kept.done_bytes, kept.step_crcs
                metrics.REBUILD_BYTES.inc(length)
                metrics.IN_PROGRESS.labels("done").set(progress.done_bytes)
                metrics.IN_PROGRESS.labels("total").set(size)
                await keep_pace(began, done.bytes_read, self.bytes_per_s)
            data = await self.journal.read(block)
            if len(data) != size:
                raise DataLoss(f"{block}: the journal holds {len(data)} of {size} rebuilt bytes")
            await self._storage.put_block(node, block, domain, data)
            if await self._storage.read_range(node, block, 0, size) != data:
                raise DataLoss(f"{block} rebuilt onto {node} does not read back as written")
            if (node, domain) != stripe.blocks[index]:
                blocks = list(stripe.blocks)
                blocks[index] = (node, domain)
                manifest.stripes[stripe_number] = replace(stripe, blocks=tuple(blocks))
                await manifest_io.rewrite(self._storage, manifest)
            await self.journal.finish(block)
        except TrenchcoatError as exc:
            progress.error = str(exc)
            metrics.REBUILDS.labels("interrupted" if isinstance(exc, RebuildInterrupted) else "failed").inc()
            raise
        finally:
            metrics.IN_PROGRESS.labels("done").set(0)
            metrics.IN_PROGRESS.labels("total").set(0)
        progress.finished = True
        progress.error = ""
        metrics.REBUILDS.labels("ok").inc()
        log.info("%s rebuilt (%d bytes, %d taken over from an earlier run) on %s in domain %s", block, size,
                 progress.resumed_bytes, node, domain)
        return progress
