"""store/volume_scrub.py: a scrub reads every live needle back and names each damaged one,
and only those."""

from __future__ import annotations

from store.volume_load import create_volume
from tests.unit.store.volume_helpers import LIMITS, n
from trenchcoat import needle


async def test_a_scrub_names_the_damaged_needles_and_skips_the_deleted(tmp_path, executor):
    v = create_volume(tmp_path, 1, LIMITS, executor)
    offsets = {k: (await v.write(n(k, 0, k), bytes([k]) * 100))[0] for k in range(1, 6)}
    await v.delete(n(2, 0, 2))
    with open(v.path, "r+b") as f:
        for k in (2, 5):  # needle 2's rot is past caring: it is deleted
            f.seek(offsets[k] + needle.HEADER.size + 50)
            f.write(b"\xff")
    checked, damaged = await v.scrub()
    assert checked == 4
    assert [(d.key, d.offset) for d in damaged] == [(5, offsets[5])] and "checksum" in damaged[0].reason
