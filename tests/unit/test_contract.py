"""The v1 contract: committed stubs are fresh, every element is commented, the seam is one
message used the same way on both sides."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest

from trenchcoat.ops import protogen

PROTOS = sorted((protogen.PROTO_ROOT / protogen.PACKAGE_DIR).glob("*.proto"))


def test_one_proto_per_service():
    names = {p.stem for p in PROTOS}
    # ... and auth.proto: the option every method names its callers with (the permission table).
    assert names == {"media", "directory", "store", "cache", "router", "transformer", "f4", "feed", "auth"}


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    fresh = protogen.generate(tmp_path)
    committed = protogen.generated_files(protogen.REPO_ROOT)
    assert [p.name for p in fresh] == [p.name for p in committed], (
        "generated file set differs: run `make proto`"
    )
    stale = [c.name for f, c in zip(fresh, committed, strict=True) if not filecmp.cmp(f, c, shallow=False)]
    assert not stale, f"stale generated stubs {stale}: run `make proto` and commit the result"


_DECL = re.compile(
    r"^\s*(message|enum|service|rpc|oneof)\s+\w+|^\s*(repeated\s+|optional\s+)?[\w.]+\s+\w+\s*=\s*\d+\s*;"
    r"|^\s*[A-Z][A-Z0-9_]*\s*=\s*\d+\s*;"
)


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_every_declaration_is_commented(proto: Path):
    lines = proto.read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        if line.strip().startswith(("syntax", "package", "import", "reserved")):
            continue
        if _DECL.match(line) and not (i > 0 and lines[i - 1].strip().startswith("//")):
            missing.append(f"{proto.name}:{i + 1}: {line.strip()}")
    assert not missing, "declarations without a comment above them:\n" + "\n".join(missing)


def test_the_seam_is_one_fixed64_message_shared_by_router_and_feed():
    from trenchcoat.v1 import feed_pb2, media_pb2, router_pb2

    field = media_pb2.MediaRef.DESCRIPTOR.fields_by_name["media_id"]
    assert field.type == field.TYPE_FIXED64
    assert media_pb2.MediaRef.DESCRIPTOR.fields == [field]
    assert feed_pb2.FeedEntry.DESCRIPTOR.fields_by_name["media"].message_type is media_pb2.MediaRef.DESCRIPTOR
    assert router_pb2.StatRequest.DESCRIPTOR.fields_by_name["ref"].message_type is media_pb2.MediaRef.DESCRIPTOR
    assert media_pb2.MediaInfo.DESCRIPTOR.fields_by_name["ref"].message_type is media_pb2.MediaRef.DESCRIPTOR


def test_every_rpc_has_its_own_request_and_response():
    from trenchcoat.v1 import (
        cache_pb2,
        directory_pb2,
        f4_pb2,
        feed_pb2,
        router_pb2,
        store_pb2,
        transformer_pb2,
    )

    seen: dict[str, str] = {}
    for module in (cache_pb2, directory_pb2, f4_pb2, feed_pb2, router_pb2, store_pb2, transformer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                for message in (method.input_type, method.output_type):
                    owner = f"{service.name}.{method.name}"
                    assert seen.setdefault(message.full_name, owner) == owner, (
                        f"{message.full_name} is used by {seen[message.full_name]} and {owner}"
                    )


def test_a_media_id_above_2_63_survives_the_wire():
    from trenchcoat.v1 import media_pb2

    ref = media_pb2.MediaRef(media_id=(1 << 64) - 1)
    assert media_pb2.MediaRef.FromString(ref.SerializeToString()).media_id == (1 << 64) - 1
