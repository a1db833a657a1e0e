"""Typed errors shared by every service, and the status each one means.

Domain code raises these (or a package's subclasses in ``<package>/errors.py``); the
chassis turns them into gRPC status codes in one place (``trenchcoat.interceptor``), and
back into the same classes in one place (``trenchcoat.rpc``), so no client ever sees
UNKNOWN, no servicer maps errors by hand and no caller parses a status code.

Across the wire an error travels as its status code, its message, and the name of the
most specific class of this module it belongs to (trailing metadata
``trenchcoat-error``): a store raising ``store.errors.NeedleNotFound`` arrives at the
cache as ``trenchcoat.errors.NeedleNotFound``, not as a bare ``NotFound``. Errors
another process must tell apart therefore live here (the hot tier's vocabulary below);
a package keeps in its own ``errors.py`` what only its own code distinguishes. Nothing
here imports grpc: ``status`` is the name of a ``grpc.StatusCode`` member.
"""

from __future__ import annotations


class TrenchcoatError(Exception):
    """Base of every error the services raise on purpose. Raised when: never directly."""

    #: Name of the grpc.StatusCode a client receives for this error.
    status = "INTERNAL"
    #: HTTP status the photo URL server (the cache) answers with.
    http_status = 500
    #: Who sent it, for an error received from another process ("" when raised here).
    remote = ""


# --- one class per status code -----------------------------------------------------------


class InvalidArgument(TrenchcoatError):
    """Raised when a request is malformed: a bad URL, an oversize blob, a field out of range."""

    status = "INVALID_ARGUMENT"
    http_status = 400


class OutOfRange(InvalidArgument):
    """Raised when a position is past the end of what exists (an offset past a blob's end)."""

    status = "OUT_OF_RANGE"
    http_status = 416


class NotFound(TrenchcoatError):
    """Raised when the named thing does not exist, was deleted, or its cookie is wrong."""

    status = "NOT_FOUND"
    http_status = 404


class AlreadyExists(TrenchcoatError):
    """Raised when creating something whose id is taken."""

    status = "ALREADY_EXISTS"
    http_status = 409


class PermissionDenied(TrenchcoatError):
    """Raised when the caller may not do this (not the owner of the thing it changes)."""

    status = "PERMISSION_DENIED"
    http_status = 403


class Unauthenticated(TrenchcoatError):
    """Raised when a request carries no valid identity. Received from proxies; not raised here."""

    status = "UNAUTHENTICATED"
    http_status = 401


class FailedPrecondition(TrenchcoatError):
    """Raised when the system is not in a state to do this, e.g. a write to a read-only volume."""

    status = "FAILED_PRECONDITION"
    http_status = 409


class Aborted(TrenchcoatError):
    """Raised when a concurrent change won (a compare-and-swap lost); retrying the whole
    operation may work."""

    status = "ABORTED"
    http_status = 409


class ResourceExhausted(TrenchcoatError):
    """Raised when a quota or capacity is used up, or a message exceeds the size limit."""

    status = "RESOURCE_EXHAUSTED"
    http_status = 507


class Unimplemented(TrenchcoatError):
    """Raised when the called method is not served by that process (an older version, or
    a service that is not built yet)."""

    status = "UNIMPLEMENTED"
    http_status = 501


class Internal(TrenchcoatError):
    """Raised when the other side failed in a way it did not expect (a bug: see its log)."""

    status = "INTERNAL"
    http_status = 500


class Unavailable(TrenchcoatError):
    """Raised when a dependency (replica, etcd, database) cannot be reached; retrying may work."""

    status = "UNAVAILABLE"
    http_status = 503


class DeadlineExceeded(Unavailable):
    """Raised when a call did not finish within its deadline; retrying may work."""

    status = "DEADLINE_EXCEEDED"
    http_status = 504


class Cancelled(Unavailable):
    """Raised when a call was cancelled before it finished (its server shutting down, or the
    caller giving up); retrying may work."""

    status = "CANCELLED"
    http_status = 503


class DataLoss(TrenchcoatError):
    """Raised when stored bytes fail verification (checksum mismatch): never serve them."""

    status = "DATA_LOSS"
    http_status = 502


class ConfigError(InvalidArgument):
    """Raised when the cluster config has an unknown key, a wrong type or a bad value."""


class NeedleRefOutOfRange(InvalidArgument):
    """Raised when a needle reference's field does not fit its width (or is not an integer)."""


class NoSuchCache(NotFound):
    """Raised when a photo URL names a cache id this cluster does not have."""


# --- the hot tier's vocabulary: what one process must tell apart in another's answer ------


class NeedleNotFound(NotFound):
    """Raised when a store holds the volume but not the needle: never written, deleted, or
    the cookie does not match (the message never says which, so a guessed URL learns
    nothing). The store's final word: another replica would say the same."""


class VolumeNotFound(NotFound):
    """Raised when a store does not hold the volume a request names (a replaced disk not yet
    refilled, or a caller with an old map): another replica may hold it."""


class VolumeReadOnly(FailedPrecondition):
    """Raised when writing to a volume that is read-only (full, failed, or flipped)."""


class ChecksumMismatch(DataLoss):
    """Raised when stored bytes fail verification: never serve them."""


class StripeUnavailable(Unavailable):
    """Raised when fewer than 10 blocks of an f4 stripe answer: a lost range cannot be
    rebuilt now (a backoff node's final word: rebuilding elsewhere would fail the same way)."""


# --- the wire ----------------------------------------------------------------------------

BY_STATUS: dict[str, type[TrenchcoatError]] = {
    cls.status: cls
    for cls in (InvalidArgument, OutOfRange, NotFound, AlreadyExists, PermissionDenied, Unauthenticated,
                FailedPrecondition, Aborted, ResourceExhausted, Unimplemented, Internal, Unavailable,
                DeadlineExceeded, Cancelled, DataLoss)
}
"""The class a status code becomes when the sender named no class of this module."""
BY_STATUS["UNKNOWN"] = Internal

WIRE_NAME_KEY = "trenchcoat-error"
"""Trailing-metadata key that carries the error's class name across the wire."""

_BY_NAME: dict[str, type[TrenchcoatError]] = {
    name: cls for name, cls in list(globals().items())
    if isinstance(cls, type) and issubclass(cls, TrenchcoatError) and cls.__module__ == __name__
}


def wire_name(error: TrenchcoatError) -> str:
    """The most specific class of this module ``error`` is an instance of."""
    for cls in type(error).__mro__:
        if cls.__module__ == __name__ and cls.__name__ in _BY_NAME:
            return cls.__name__
    return TrenchcoatError.__name__


def from_wire(status: str, message: str, name: str, remote: str) -> TrenchcoatError:
    """The error a received status stands for: the named class when it agrees with the
    status code (a name from a newer sender, or one that disagrees, falls back to the
    status), with the message kept and the remote named."""
    cls = _BY_NAME.get(name)
    if cls is None or cls.status != status:
        cls = BY_STATUS.get(status, Internal)
    error = cls(f"{remote}: {message}" if remote else message)
    error.remote = remote
    return error
