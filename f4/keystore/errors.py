"""Errors of f4's key store; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import FailedPrecondition, NotFound


class KeyNotFound(NotFound):
    """Raised when a blob has no key: never made, or discarded (the blob is deleted)."""


class KeyDiscarded(FailedPrecondition):
    """Raised when a key is asked to be made for a blob whose key was discarded."""
