"""A needle's reference on the wire and in the code, converted in one place: the contract's
``NeedleLocator`` (what a photo URL's ``<logical_volume>,<photo>`` carries, in every
service's messages) to and from ``trenchcoat.needle_ref.NeedleRef`` (what the code below
the servicers and clients holds). A locator without a logical volume names no needle:
INVALID_ARGUMENT, saying which field."""

from __future__ import annotations

from trenchcoat.errors import InvalidArgument
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.v1 import media_pb2


def locator(needle: NeedleRef) -> media_pb2.NeedleLocator:
    return media_pb2.NeedleLocator(logical_volume=needle.logical_volume, key=needle.key,
                                   alternate_key=needle.alternate_key, cookie=needle.cookie)


def needle_of(loc: media_pb2.NeedleLocator, field: str = "needle") -> NeedleRef:
    """The needle ``loc`` names; ``field`` is its name in the request (for the message)."""
    if not loc.logical_volume:
        raise InvalidArgument(f"{field}.logical_volume is required")
    return NeedleRef(logical_volume=loc.logical_volume, key=loc.key, alternate_key=loc.alternate_key,
                     cookie=loc.cookie)
