"""Typed errors shared by every service, and the status each one means.

Domain code raises these (or a package's subclasses in ``<package>/errors.py``); the
chassis (``trenchcoat.server``) turns them into gRPC status codes in one place, so no
client ever sees UNKNOWN and no servicer maps errors by hand. Nothing here imports grpc:
``status`` is the name of a ``grpc.StatusCode`` member.
"""

from __future__ import annotations


class TrenchcoatError(Exception):
    """Base of every error the services raise on purpose. Raised when: never directly."""

    #: Name of the grpc.StatusCode a client receives for this error.
    status = "INTERNAL"
    #: HTTP status the photo gateway answers with.
    http_status = 500


class InvalidArgument(TrenchcoatError):
    """Raised when a request is malformed: a bad URL, an oversize blob, a field out of range."""

    status = "INVALID_ARGUMENT"
    http_status = 400


class NotFound(TrenchcoatError):
    """Raised when the named thing does not exist, was deleted, or its cookie is wrong."""

    status = "NOT_FOUND"
    http_status = 404


class AlreadyExists(TrenchcoatError):
    """Raised when creating something whose id is taken."""

    status = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(TrenchcoatError):
    """Raised when the system is not in a state to do this, e.g. a write to a read-only volume."""

    status = "FAILED_PRECONDITION"
    http_status = 409


class ResourceExhausted(TrenchcoatError):
    """Raised when a quota or capacity is used up (no writable volume has room)."""

    status = "RESOURCE_EXHAUSTED"
    http_status = 507


class Unavailable(TrenchcoatError):
    """Raised when a dependency (replica, etcd, database) cannot be reached; retrying may work."""

    status = "UNAVAILABLE"
    http_status = 503


class DataLoss(TrenchcoatError):
    """Raised when stored bytes fail verification (checksum mismatch): never serve them."""

    status = "DATA_LOSS"
    http_status = 502


class ConfigError(InvalidArgument):
    """Raised when the cluster config has an unknown key, a wrong type or a bad value."""
