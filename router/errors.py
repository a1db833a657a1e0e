"""Errors of the router; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import InvalidArgument, NotFound


class MediaNotFound(NotFound):
    """Raised when a media_id names no object: never uploaded, its upload never completed,
    or deleted (the message says which); or a rendition not stored (yet)."""


class UploadRejected(InvalidArgument):
    """Raised for bad upload input: empty, oversize, a negative user id, a content type
    not accepted, a header that disagrees with the bytes."""


class BatchTooLarge(InvalidArgument):
    """Raised when a BatchStat asks for more ids than one call may."""
