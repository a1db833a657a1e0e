"""store/volume_export.py: the export streams the volume file's bytes from an offset to its end."""

from __future__ import annotations

import os

import pytest

from store.errors import BadNeedleRequest
from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n


async def test_export_streams_the_file_from_an_offset(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    for i in range(20):
        await v.write(n(i, 0, i), os.urandom(1000))
    chunks = [c async for c in v.export(64, 4096)]
    assert b"".join(d for _, d, _ in chunks) == v.path.read_bytes()[64:]
    assert chunks[0][0] == 64 and chunks[-1][2] == v.file_bytes


async def test_an_offset_past_the_end_is_refused(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    await v.write(n(1, 0, 1), b"x" * 100)
    with pytest.raises(BadNeedleRequest, match="past the end"):
        [c async for c in v.export(v.file_bytes + 8, 4096)]
    assert [c async for c in v.export(v.file_bytes, 4096)] == []  # at the end: nothing more
