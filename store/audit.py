"""The background audit of every needle this store holds, and the reports of what it (or
a read) finds wrong, to the Directory.

``Auditor`` walks every volume's live needles in file order (``Volume.audit_step``: the
header, that the index names these bytes, the CRC of the data), a budget of bytes each
tick, so it reads at most ``store.audit_bytes_per_s`` on average, in a thread of its own so
reads never wait behind it in the store's I/O threads. A pass over every volume starts
every ``store.audit_interval_s`` (a pass still under way then goes on; a store too big to
pass at the throttle within the interval says so). A volume opened after a crash has its
content digest recounted first (``Volume.recount``).

``DamageReports`` writes each finding to etcd under ``damage/<volume>/<key>.<alt>/<machine>``
(the Directory's layout, ``directory/model.py``), where the leader finds it and has the
needle rewritten from a healthy replica. A read that answers DATA_LOSS reports its needle
the same way at once (read repair), without waiting for the audit to come by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from store import metrics
from store.volume import Volume
from store.volume_audit import AuditCursor
from trenchcoat.etcd import Etcd
from trenchcoat.store_types import Finding
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)

STEP_S = 0.25
"""Seconds between the audit's steps; each reads audit_bytes_per_s * STEP_S bytes."""
MAX_PENDING_REPORTS = 10_000
"""Findings held for etcd at most (while etcd is away); more are dropped and counted: the
next pass finds them again."""


class DamageReports(PeriodicWorker):
    """Findings handed to the Directory through etcd, a batch each tick."""

    def __init__(self, etcd: Etcd | None, machine_id: int, interval_s: float = 0.5) -> None:
        super().__init__("damage-reports", interval_s)
        self._etcd = etcd
        self._machine_id = machine_id
        self._pending: dict[tuple[int, int, int], Finding] = {}

    def report(self, finding: Finding, found_by: str) -> None:
        """Queues ``finding`` (non-blocking; the next tick writes it)."""
        metrics.AUDIT_FINDINGS.labels(finding.kind, found_by).inc()
        if len(self._pending) < MAX_PENDING_REPORTS:
            self._pending[finding.volume_id, finding.key, finding.alternate_key] = finding
        self.wake()

    async def tick(self) -> None:
        if self._etcd is None:
            self._pending.clear()
            return
        while self._pending:
            ident, finding = next(iter(self._pending.items()))
            await self._etcd.put(finding.key_for(self._machine_id),
                                 finding.record(self._machine_id, int(time.time() * 1000)))
            self._pending.pop(ident, None)


class Auditor(PeriodicWorker):
    """The audit of every volume of this store, paced to ``bytes_per_s``."""

    def __init__(self, volumes: Callable[[], list[Volume]], reports: DamageReports, *,
                 bytes_per_s: int, interval_s: float) -> None:
        super().__init__("auditor", STEP_S)
        self._volumes = volumes
        self._reports = reports
        self._budget = max(1, int(bytes_per_s * STEP_S))
        self._interval_s = interval_s
        metrics.AUDIT_INTERVAL.set(interval_s)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-audit")
        self._queue: list[Volume] = []
        self._cursor: tuple[Volume, AuditCursor] | None = None
        self._pass_began: float | None = None
        self._last_began = 0.0
        self.passes = 0
        """Full passes finished since the start."""

    async def tick(self) -> None:
        for volume in self._volumes():
            if not volume.digest_settled:
                fixed = await volume.recount(self._executor)
                log.info("volume %d: content digest recounted after a restart (%d deletes the index had missed)",
                         volume.volume_id, fixed)
        now = time.monotonic()
        if self._pass_began is None:
            if self.passes and now - self._last_began < self._interval_s:
                return  # the next pass is not due yet
            self._pass_began = self._last_began = now
            self._queue = list(self._volumes())
        await self._step()

    async def _step(self) -> None:
        budget = self._budget
        while budget > 0:
            if self._cursor is None:
                if not self._queue:
                    self._finish_pass()
                    return
                volume = self._queue.pop(0)
                self._cursor = (volume, volume.audit_snapshot())
            volume, cursor = self._cursor
            if cursor.done:
                self._cursor = None
                continue
            step = await volume.audit_step(cursor, budget, self._executor)
            budget -= max(step.bytes_read, 1)
            metrics.AUDITED_NEEDLES.inc(step.checked)
            metrics.AUDITED_BYTES.inc(step.bytes_read)
            for finding in step.findings:
                log.error("volume %d: audit found needle %#x/%d at offset %d %s (%s); reported for repair",
                          finding.volume_id, finding.key, finding.alternate_key, finding.offset, finding.kind,
                          finding.reason)
                self._reports.report(finding, "audit")

    def _finish_pass(self) -> None:
        assert self._pass_began is not None
        took = time.monotonic() - self._pass_began
        self._pass_began = None
        self.passes += 1
        metrics.AUDIT_LAST_PASS.set(time.time())
        metrics.AUDIT_PASS_SECONDS.set(took)
        if took > self._interval_s:
            log.warning("the audit's pass took %.0fs, longer than store.audit_interval_s (%.0fs): raise "
                        "store.audit_bytes_per_s or the interval", took, self._interval_s)

    async def shutdown(self) -> None:
        await super().shutdown()
        self._executor.shutdown(wait=True)
