"""Errors of the f4 cell (front, backoff nodes, rebuilder); the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import Unavailable


class RebuildInterrupted(Unavailable):
    """Raised when a rebuild stops midway because its process is shutting down (the
    journal keeps what was done; the next start carries on)."""


class TooFewBlocks(Unavailable):
    """Raised when fewer than K blocks of a stripe are at hand: the range cannot be rebuilt."""
