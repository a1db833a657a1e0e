"""Plain values the Haystack store and its clients exchange: what a store reports of a
volume, a piece of a volume's export stream, a needle that failed verification. No I/O
and no gRPC here, so the store's own modules and the directory's pure policy use them
without pulling in the transport (``trenchcoat.clients.store`` builds them from the wire).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class PhysicalVolume:
    """A replica as its store reports it."""

    volume_id: int
    read_only: bool
    """Writes are refused (full, failed, or flipped by the Directory)."""
    needles: int
    """Live needles."""
    deleted: int
    """Needles flagged deleted and not yet compacted away."""
    live_bytes: int
    file_bytes: int
    """Size of the volume file (appended bytes, including any not yet acknowledged)."""
    capacity_bytes: int
    digest: bytes = b""
    """The content digest (``store/digest.py``): equal on two replicas exactly when their
    live needles are; empty from a store that does not report one."""
    digest_settled: bool = True
    """False while the digest may still count a needle deleted before a crash."""

    def same_contents(self, other: PhysicalVolume) -> bool:
        """Whether the two copies hold the same live needles: by digest when both report a
        settled one, else by their counts."""
        if self.digest and other.digest and self.digest_settled and other.digest_settled:
            return self.digest == other.digest
        return (self.needles, self.deleted, self.live_bytes, self.file_bytes) == (
            other.needles, other.deleted, other.live_bytes, other.file_bytes)


@dataclass(frozen=True, slots=True)
class ExportChunk:
    """One piece of a volume file from a store's export stream."""

    offset: int
    data: bytes
    crc32c: int
    """CRC32C of ``data`` computed by the sender (checked by the receiver)."""
    end: int
    """Size of the volume file when the export started: the stream ends there."""


@dataclass(frozen=True, slots=True)
class Finding:
    """What a store's audit (or a read) found wrong with one needle of its copy: reported
    to the Directory, whose leader has it repaired from a healthy replica."""

    volume_id: int
    key: int
    alternate_key: int
    offset: int
    size: int
    """Stored size the index records."""
    kind: str
    """"damaged" (CRC), "unreadable" (header, footer or disk) or "index" (the index
    names another needle's bytes)."""
    reason: str

    def key_for(self, machine_id: int) -> str:
        """Where the Directory finds this finding of ``machine_id``'s copy in etcd."""
        return damage_key(self.volume_id, self.key, self.alternate_key, machine_id)

    def record(self, machine_id: int, found_ms: int) -> dict[str, Any]:
        """The etcd record of this finding of ``machine_id``'s copy."""
        return {"machine_id": machine_id, "volume_id": self.volume_id, "key": self.key,
                "alternate_key": self.alternate_key, "offset": self.offset, "size": self.size,
                "kind": self.kind, "reason": self.reason, "found_ms": found_ms}


DAMAGE_PREFIX = "damage/"
"""The etcd prefix of damage reports: written by stores (and by the leader for a repair's
source found damaged), read and removed by the leader (``directory/model.py``'s layout)."""


def damage_key(volume_id: int, key: int, alternate_key: int, machine_id: int) -> str:
    return f"{DAMAGE_PREFIX}{volume_id}/{key}.{alternate_key}/{machine_id}"


@dataclass(frozen=True, slots=True)
class NeedleSummary:
    """One needle of a volume's listing (``StoreService.ListNeedles``): what a catch-up
    compares between two copies."""

    key: int
    alternate_key: int
    hash: int
    """Its content digest hash; 0 when deleted, or when its header or footer is damaged."""
    deleted: bool
    stored_size: int


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a catch-up of one copy from another moved (``StoreService.CatchUpVolume``)."""

    needles_copied: int = 0
    bytes_copied: int = 0
    deletes_applied: int = 0
    conflicts: int = 0
    """Needles both copies hold live with different contents (left as they are)."""
    bytes_received: int = 0
    """Everything received from the source: listings and needles."""


@dataclass(frozen=True, slots=True)
class Damage:
    """A needle that failed verification (a scrub's or a startup scan's finding)."""

    key: int
    alternate_key: int
    offset: int
    reason: str


class Blob(NamedTuple):
    """What a read of a needle returns: its verified bytes and the MIME type stored with
    them (``application/octet-stream`` for a needle written without one)."""

    data: bytes
    content_type: str
