"""One physical volume: a file of needles (format in ``trenchcoat/needle.py``), its in-RAM
index, and the operations on it, one file each (as SeaweedFS's ``volume_*.go``):

- ``store/volume_base.py``: the state they share (descriptor, index, end, locks,
  counters), turning read-only, the answers for a missing or damaged needle;
- ``store/volume_append.py``: the write path (one pwrite, then the group commit of
  ``store/volume_commit.py``; only then indexed and acknowledged);
- ``store/volume_read.py``: the read path (one index lookup, one pread, verified);
- ``store/volume_delete.py``: deletes (the flag byte set in place, durably);
- ``store/volume_compact.py``: compaction (live needles copied to a new file, swapped in);
- ``store/volume_scrub.py``: the scrub (every live needle read back and verified);
- ``store/volume_export.py``: the export stream of the file's bytes (repairs, f4);
- ``store/volume_audit.py``: the background audit, the digest's recount, a needle
  mended from a healthy replica's bytes;
- ``store/volume_sync.py``: the needles of some digest buckets listed for a catch-up;
- ``store/volume_load.py``: creating a volume file, and opening one at startup
  (checkpoint, then a scan of the tail).

``Volume`` puts the operations together and holds the lifecycle: the index checkpoint,
close, and retiring a copy a repair replaces.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from store import checkpoint
from store.volume_append import VolumeAppend
from store.volume_audit import VolumeAudit
from store.volume_compact import VolumeCompact
from store.volume_delete import VolumeDelete
from store.volume_export import VolumeExport
from store.volume_read import VolumeRead
from store.volume_scrub import VolumeScrub
from store.volume_sync import VolumeSync


@dataclass(frozen=True, slots=True)
class VolumeLimits:
    """Limits from the store config."""

    capacity_bytes: int
    """Largest volume file; a write that does not fit turns the volume read-only."""
    max_needle_bytes: int
    """Largest needle data."""


class Volume(VolumeAppend, VolumeRead, VolumeDelete, VolumeCompact, VolumeScrub, VolumeExport, VolumeAudit,
             VolumeSync):
    """One open volume file with its index. All methods run on the owning event loop.
    Made by ``create_volume`` or ``open_volume`` (``store/volume_load.py``)."""

    async def checkpoint(self, *, clean: bool = False) -> bool:
        """Writes the index checkpoint (with the content digest) if anything changed, or
        always when ``clean`` (the shutdown's, under the append lock); True if written."""
        if (not self._changed and not clean) or self._retired:  # a replaced copy must not overwrite its successor's
            return False
        self._changed = False
        covered = min(self._pending) if self._pending else self._end
        keys, alts, units, sizes = (a.copy() for a in self._index.arrays())
        arrays = (keys, alts, units, sizes)
        await self._in_thread(functools.partial(
            checkpoint.write, self.index_path, self.volume_id, self.superblock.generation, covered, arrays,
            self.digest.copy(), clean=clean and self.digest_settled,
        ))
        return True

    async def close(self) -> None:
        async with self._append_lock:
            await self.checkpoint(clean=True)
            self._handle.retire()

    async def retire(self) -> None:
        """Before this copy's file is replaced: refuse writes and wait out the append in
        progress; no checkpoint or compaction of it happens from here on (either would
        overwrite its successor's files). Reads go on until ``detach``."""
        self.superblock = replace(self.superblock, read_only=True)
        async with self._append_lock:
            self._retired = True

    def detach(self) -> None:
        """Closes the descriptor once the reads under way on it are done (a copy replaced
        after ``retire``, or one opened only to be checked)."""
        self._handle.retire()
