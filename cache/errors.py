"""Errors of the cache; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import Unavailable


class LeaseWaitExpired(Unavailable):
    """Raised to a waiter when the lease holder did not finish within the wait bound."""
