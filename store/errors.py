"""Errors of the Haystack store: every class it raises is here. The chassis maps each to
its gRPC status.

The four a store's callers tell apart (a missing needle from a missing volume, a refused
write, damaged bytes) are the chassis's own classes, re-exported here, so they arrive at
the cache, router and directory as the same classes (``trenchcoat.errors``). The rest are
the store's own; each travels as the chassis class it derives from.
"""

from __future__ import annotations

from trenchcoat.errors import (
    AlreadyExists,
    ChecksumMismatch,
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NeedleNotFound,
    Unavailable,
    VolumeNotFound,
    VolumeReadOnly,
)

__all__ = [
    "BadNeedleRequest",
    "ChecksumMismatch",
    "CompactionLostWrite",
    "CorruptVolume",
    "DigestNotSettled",
    "DiskFailure",
    "KeyStillHeld",
    "MachineIdTaken",
    "NeedleNotFound",
    "NeedleSizeDiffers",
    "NeedleTooLarge",
    "RepairInProgress",
    "SourceCannotExport",
    "SourceStalled",
    "VolumeExists",
    "VolumeNotFound",
    "VolumeReadOnly",
    "VolumeRetired",
    "VolumeStillWritable",
]


class MachineIdTaken(AlreadyExists):
    """Raised when another live store holds this machine id."""


class KeyStillHeld(AlreadyExists):
    """Raised when this store's registration key was held at its claim and its holder had
    gone by the look after it: the claim is tried again."""


class VolumeExists(AlreadyExists):
    """Raised when creating a volume whose id this store already holds."""


class NeedleTooLarge(InvalidArgument):
    """Raised when a needle's data exceeds the configured maximum."""


class BadNeedleRequest(InvalidArgument):
    """Raised when a request field is out of range (volume id 0, key out of range, ...)."""


class DiskFailure(Unavailable):
    """Raised when a write or sync fails at the OS; the volume turns read-only."""


class CorruptVolume(DataLoss):
    """Raised when a volume file's superblock is unreadable or of an unknown format, or a
    copy received for a repair is not the volume it should be."""


class SourceCannotExport(FailedPrecondition):
    """Raised when the store a repair should copy from cannot export the volume (it does
    not hold it, or refuses the request): pick another source."""


class SourceStalled(Unavailable):
    """Raised when the store a repair copies from sends nothing of the volume for
    ``store.peer_timeout_s`` (stalled or partitioned): the repair is to be retried."""


class VolumeRetired(FailedPrecondition):
    """Raised when work on a volume copy finds it replaced by a repair meanwhile."""


class RepairInProgress(FailedPrecondition):
    """Raised when a repair of a volume is asked for while one is running."""


class VolumeStillWritable(FailedPrecondition):
    """Raised when freeing a volume that is still writable: only a sealed volume is freed."""


class CompactionLostWrite(Internal):
    """Raised when a write that waited for its sync while a compaction swapped files is not
    in the new file's index (a bug: the compaction's tail catch-up copies every write
    appended before the swap)."""


class NeedleSizeDiffers(FailedPrecondition):
    """Raised when a needle repair's source holds another version of the needle (or none
    that verifies as one): the copies differ, which a volume repair mends, not a needle's."""


class DigestNotSettled(Unavailable):
    """Raised when a catch-up meets a copy whose content digest is still being recounted
    after a restart (seconds): the catch-up is to be retried."""
