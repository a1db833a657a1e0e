"""Errors of the transformer; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import InvalidArgument, NotFound


class UnrenderableSource(InvalidArgument):
    """Raised when a source can never be rendered, however often its job runs: not an
    image the decoder reads, truncated or damaged pixels, more than
    ``transformer.max_pixels`` pixels, more than ``transformer.max_source_bytes`` bytes.
    Its job goes to the dead letters at once, with this reason."""


class BadJobRequest(InvalidArgument):
    """Raised when a request names no job: a malformed job id, a media type that gets no
    renditions, a limit out of range."""


class JobNotFound(NotFound):
    """Raised when retrying a job that is not in the dead-letter stream."""
