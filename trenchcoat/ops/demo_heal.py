"""The demo's healing section: a byte of a photo flipped on one replica's disk, found by the
store's background audit and rewritten from a healthy replica; and the store the demo
killed, lost for good, replaced: each volume it held gets a new replica on another store,
copied and verified, and the map names it instead. The demo's config shortens the
timings (``AUDIT_INTERVAL_S``, ``REPLACE_AFTER_S``); in production they are a week and
ten minutes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from trenchcoat import needle, urls
from trenchcoat.clients.directory import DirectoryClient, VolumeView
from trenchcoat.config import Config
from trenchcoat.rpc import ChannelPool

AUDIT_INTERVAL_S = 3.0
"""store.audit_interval_s in the demo: a pass over every needle every 3 seconds."""
REPLACE_AFTER_S = 5.0
"""directory.replace_after_s in the demo: a store down 5 seconds is lost for good."""
OVERRIDES = {"TRENCHCOAT_STORE__AUDIT_INTERVAL_S": str(AUDIT_INTERVAL_S),
             "TRENCHCOAT_DIRECTORY__REPLACE_AFTER_S": str(REPLACE_AFTER_S)}
HEAL_WAIT_S = 180.0
"""Bound on each wait: generous, for a loaded machine."""


def needle_at(path: Path, key: int, alternate_key: int) -> tuple[int, bytes]:
    """(offset, stored bytes) of the needle in a volume file, found by walking it."""
    raw = path.read_bytes()
    at = needle.SUPERBLOCK.size
    while at + needle.HEADER.size <= len(raw):
        found, size = needle.unpack_header(raw, at)
        stored = needle.stored_size(size)
        if (found.key, found.alternate_key) == (key, alternate_key):
            return at, raw[at:at + stored]
        at += stored
    raise LookupError(f"needle {key:#x}/{alternate_key} is not in {path}")


async def _volumes(config: Config) -> list[VolumeView]:
    async with ChannelPool() as pool:
        return await DirectoryClient(pool, config.directory_endpoints(), timeout_s=30).list_volumes()


def _wait(condition: Callable[[], bool], bound_s: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``bound_s``."""
    began = time.monotonic()
    while time.monotonic() - began < bound_s:
        if condition():
            return time.monotonic() - began
        time.sleep(0.5)
    return None


MORE_UPLOADS = 10
"""Rounds of one more photo each the healing part uploads when every photo so far landed
on a volume with a replica on the killed store (each upload picks a volume at random)."""


def show_healing(config: Config, data_dir: Path, photos: list[tuple[str, str, bytes]], killed: int,
                 fetch: Callable[[str], tuple[int, bytes]], check: Callable[[bool, str], None],
                 say: Callable[[str], None], more: Callable[[], tuple[str, str, bytes]] | None = None) -> None:
    """``photos``: (URL path, URL, bytes) of uploads; ``killed``: the machine the demo killed;
    ``more``: uploads one more photo, when none of ``photos`` is on a volume the killed store
    has no replica of."""
    chosen = None
    for _ in range(MORE_UPLOADS + 1):
        volumes = {v.id: v for v in asyncio.run(_volumes(config))}
        chosen = next(((path, url, data) for path, url, data in photos if all(
            r.machine_id != killed for r in volumes[urls.parse_path(path).needle.logical_volume].replicas)), None)
        if chosen is not None or more is None:
            break
        photos = [*photos, more()]
    if chosen is None:
        say("== healing: skipped, every photo's volume has a replica on the killed store")
        return
    path, url, data = chosen
    ref = urls.parse_path(path).needle
    volume = volumes[ref.logical_volume]
    victim = volume.replicas[0].machine_id
    files = {r.machine_id: data_dir / f"store-{r.machine_id}" / f"vol-{volume.id}.dat" for r in volume.replicas}
    offset, stored = needle_at(files[victim], ref.key, ref.alternate_key)
    at = offset + needle.HEADER.size + len(data) // 2
    say(f"== bit rot: one byte of {url} flipped in store-{victim}'s copy (vol-{volume.id}.dat at offset {at}); "
        "nobody reads it")
    with open(files[victim], "r+b") as f:
        f.seek(at)
        f.write(bytes([stored[at - offset] ^ 0x20]))

    def identical() -> bool:
        return len({needle_at(p, ref.key, ref.alternate_key)[1] for p in files.values()}) == 1

    took = _wait(identical, HEAL_WAIT_S)
    check(took is not None, f"the store's audit (a pass every {AUDIT_INTERVAL_S:g}s here, a week by default) found "
                            f"it and the leader had it rewritten from a healthy replica"
                            + (f" in {took:.1f}s: all 3 copies byte-identical again" if took is not None else ""))
    status, body = fetch(url)
    check(status == 200 and body == data, f"the photo reads back byte-exact ({status})")

    held = sorted(v.id for v in volumes.values() if any(r.machine_id == killed for r in v.replicas))
    say(f"== store-{killed} (killed above) never comes back: down {REPLACE_AFTER_S:g}s "
        f"(directory.replace_after_s) it is lost, and its volumes {held} get new replicas elsewhere")

    def replaced() -> bool:
        now = {v.id: v for v in asyncio.run(_volumes(config))}
        return all(v in now and all(r.alive and r.machine_id != killed for r in now[v].replicas)
                   and len({r.rack for r in now[v].replicas}) == len(now[v].replicas) == 3 and not now[v].repair
                   for v in held)

    took = _wait(replaced, HEAL_WAIT_S + REPLACE_AFTER_S)
    now = {v.id: v for v in asyncio.run(_volumes(config))}
    for v in held:
        if v in now:
            say(f"   volume {v}: replicas " + "  ".join(f"{r.machine_id}@{r.rack}" for r in now[v].replicas))
    check(took is not None, f"every volume store-{killed} held has 3 live replicas on 3 racks again, equal by content "
                            "digest" + (f" ({took:.1f}s)" if took is not None else ""))
    served = sum(fetch(u)[1] == d for p, u, d in photos
                 if urls.parse_path(p).needle.logical_volume in held)
    total = sum(1 for p, _, _ in photos if urls.parse_path(p).needle.logical_volume in held)
    check(served == total, f"{served}/{total} photos of those volumes read back byte-exact")

