"""Errors of the feed; the chassis maps each to its gRPC status."""

from __future__ import annotations

from trenchcoat.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)


class BadFeedRequest(InvalidArgument):
    """Raised when a request field is out of range: a negative user id, a caption over
    2,200 characters, a page size over the maximum, a cursor no feed gave out."""


class FollowSelf(InvalidArgument):
    """Raised when a user asks to follow (or unfollow) themselves."""


class MediaMissing(NotFound):
    """Raised when a post names a media_id the media pipeline does not hold (or deleted)."""


class NotTheAuthor(PermissionDenied):
    """Raised when a user posts media uploaded by someone else, or deletes another's post."""


class PostMissing(NotFound):
    """Raised when deleting a post that does not exist."""


class PostDeleted(FailedPrecondition):
    """Raised when posting again a media_id whose post was deleted."""
