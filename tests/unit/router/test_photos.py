"""router/photos.py: the URL a photo is read at, whatever its volume's age (the volume map
stood in for by a plain object)."""

from __future__ import annotations

from datetime import UTC, datetime

from router.metadata import MediaRow, MediaState
from router.photos import Photos
from trenchcoat import urls
from trenchcoat.clients.directory import ReplicaView, VolumeView


class Map:
    def __init__(self, volume: VolumeView) -> None:
        self.view = volume

    async def volume(self, volume_id: int) -> VolumeView:
        return self.view


class Caches:
    count = 2


def row(media_id: int) -> MediaRow:
    return MediaRow(media_id=media_id, owner_id=1, logical_volume=5, cookie=7, size_bytes=3, content_type="image/jpeg",
                    state=MediaState.ACTIVE, created_at=datetime.now(UTC), idempotency_key=None)


def photos(volume: VolumeView) -> Photos:
    return Photos(None, Map(volume), Caches(), None, cdn_base_url="http://cdn")  # type: ignore[arg-type]


HOT = VolumeView(5, True, 0, tuple(ReplicaView(m, 5, f"s{m}", True) for m in (4, 2, 9)), state="writable")


async def test_a_warm_photo_keeps_the_url_it_had_while_hot():
    for media_id in range(100, 110):
        hot, tier = await photos(HOT).located(row(media_id))
        assert tier == "hot"
        warm = VolumeView(5, False, 0, (), state="warm", freed_machines=(2, 4, 9))
        path, tier = await photos(warm).located(row(media_id))
        assert tier == "warm" and path == hot and urls.parse_path(path.path()) == path


async def test_a_volume_freed_before_its_machines_were_recorded_names_a_valid_machine():
    legacy = VolumeView(5, False, 0, (), state="warm")
    path, tier = await photos(legacy).located(row(100))
    assert tier == "warm" and path.machine_id > 0  # the cache refuses machine 0
