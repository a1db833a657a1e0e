"""Errors of the directory; the chassis maps each to its gRPC status (``PlacementError``, a
plain exception, never leaves the directory: the leader logs it and answers without it)."""

from __future__ import annotations

from trenchcoat.errors import FailedPrecondition, NotFound, Unavailable


class PlacementError(Exception):
    """Raised when a volume's replicas cannot be put on distinct racks."""


class VolumeMissing(NotFound):
    """Raised for a logical volume id the Directory does not know."""


class VolumeUnderRepair(FailedPrecondition):
    """Raised when a volume asked for in f4 is being repaired: its replicas may differ, so
    none of them may be encoded until the leader has made them match."""


class NoWritableVolume(Unavailable):
    """Raised when no writable volume has room; retry shortly (the leader grows more)."""


class MigrationOff(FailedPrecondition):
    """Raised when a volume is asked for in f4 of a directory that does not move volumes
    there (f4.migrate is off)."""
