"""trenchcoat.media_types: the codes stored in needles and the names clients send."""

from __future__ import annotations

import pytest

from trenchcoat import media_types
from trenchcoat.errors import InvalidArgument


def test_codes_are_stable_and_each_type_has_one_code_mime_and_extension():
    # Codes are on disk: these must never change.
    assert [(t.code, t.mime) for t in media_types.TYPES[:4]] == [
        (0, "application/octet-stream"), (1, "image/jpeg"), (2, "image/png"), (3, "image/gif")]
    assert media_types.of_code(8).mime == "video/mp4"
    assert media_types.of_code(200) is media_types.OCTET_STREAM  # a newer writer's type reads as bytes


@pytest.mark.parametrize("sent, mime", [
    ("image/jpeg", "image/jpeg"), ("IMAGE/JPEG", "image/jpeg"), ("image/jpg", "image/jpeg"),
    ("image/png; charset=binary", "image/png"), (" video/mp4 ", "video/mp4"),
    ("application/x-mpegURL", "application/vnd.apple.mpegurl"),
])
def test_names_clients_send_map_to_one_type(sent, mime):
    assert media_types.of_mime(sent).mime == mime


@pytest.mark.parametrize("sent", ["", "jpeg", "text/plain", "image/", "application/pdf"])
def test_other_types_are_refused_with_the_list(sent):
    with pytest.raises(InvalidArgument, match="use one of application/octet-stream, image/jpeg"):
        media_types.of_mime(sent)
