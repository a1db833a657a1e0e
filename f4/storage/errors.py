"""Errors of f4's storage nodes; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import NotFound


class BlockNotFound(NotFound):
    """Raised when this node holds no such block."""
