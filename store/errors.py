"""Errors of the Haystack store; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)


class NeedleNotFound(NotFound):
    """Raised when a needle is not in the volume, was deleted, or the cookie does not match
    (the message never says which, so a guessed URL learns nothing)."""


class VolumeNotFound(NotFound):
    """Raised when a request names a volume this store does not hold."""


class VolumeExists(AlreadyExists):
    """Raised when creating a volume whose id this store already holds."""


class VolumeReadOnly(FailedPrecondition):
    """Raised when writing to a volume that is read-only (full, failed, or flipped)."""


class NeedleTooLarge(InvalidArgument):
    """Raised when a needle's data exceeds the configured maximum."""


class BadNeedleRequest(InvalidArgument):
    """Raised when a request field is out of range (volume id 0, key out of range, ...)."""


class ChecksumMismatch(DataLoss):
    """Raised when a needle's stored bytes fail verification: never serve them."""


class DiskFailure(Unavailable):
    """Raised when a write or sync fails at the OS; the volume turns read-only."""


class CorruptVolume(DataLoss):
    """Raised when a volume file's superblock is unreadable or of an unknown format."""


class RepairInProgress(FailedPrecondition):
    """Raised when a repair of a volume is asked for while one is running."""
